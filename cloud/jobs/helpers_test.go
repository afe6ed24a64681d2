package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/s3"
	"github.com/iotagent/iotagent/cloud/store"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sent is a message the service sent: To is the client for a direct
// answer, "" for a publish to subscribers.
type sent struct {
	To, Topic string
	Payload   map[string]any
}

type env struct {
	svc   *Service
	reg   *registry.Registry
	files *s3.Store
	db    *store.DB
	clock *clock
	ticks chan time.Time
	fault func(thing, op string) string
	logs  logBuffer // what the service logged, as text

	mu   sync.Mutex
	msgs []sent
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newEnv(t testing.TB, things ...string) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "sim.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	e := &env{db: db, clock: &clock{t: t0}, ticks: make(chan time.Time)}
	e.reg = registry.New(db, "us-east-1", "123456789012", e.clock.Now)
	for _, th := range things {
		if _, err := e.reg.CreateThing(th, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	e.files, err = s3.New(s3.Options{DB: db, Dir: filepath.Join(dir, "s3"), BaseURL: "http://127.0.0.1:1/s3", Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = e.open(t)
	return e
}

// open creates a Service over the env's database (again, for restarts).
func (e *env) open(t testing.TB) *Service {
	t.Helper()
	record := func(to, topic string, payload []byte) error {
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Errorf("%s: payload %q is not a JSON object: %v", topic, payload, err)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.msgs = append(e.msgs, sent{to, topic, m})
		return nil
	}
	svc, err := New(Options{
		DB: e.db, Registry: e.reg, Files: e.files, Now: e.clock.Now, Ticks: e.ticks,
		Logger:    slog.New(slog.NewTextHandler(&e.logs, nil)),
		Publish:   func(topic string, payload []byte) error { return record("", topic, payload) },
		PublishTo: func(c, topic string, payload []byte) error { return record(c, topic, payload) },
		Fault: func(thing, op string) string {
			if e.fault != nil {
				return e.fault(thing, op)
			}
			return ""
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// take returns and forgets the messages sent so far.
func (e *env) take() []sent {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.msgs
	e.msgs = nil
	return m
}

// request publishes payload on $aws/things/THING/jobs/API as THING's client
// and returns the one answer (it fails unless exactly one answer went to
// the requester) plus the other messages.
func (e *env) request(t testing.TB, thing, api, payload string) (sent, []sent) {
	t.Helper()
	e.svc.HandleRequest(&broker.Principal{ClientID: thing, ThingName: thing}, "$aws/things/"+thing+"/jobs/"+api, []byte(payload))
	var answer *sent
	var others []sent
	for _, m := range e.take() {
		if m.To != "" {
			if answer != nil {
				t.Fatalf("two answers: %v and %v", *answer, m)
			}
			if m.To != thing {
				t.Fatalf("answer sent to %q, not the requester %q", m.To, thing)
			}
			answer = &m
			continue
		}
		if strings.HasSuffix(m.Topic, "/accepted") || strings.HasSuffix(m.Topic, "/rejected") {
			t.Fatalf("answer %s published to subscribers", m.Topic)
		}
		others = append(others, m)
	}
	if answer == nil {
		t.Fatalf("no answer to %s %s", api, payload)
		return sent{}, others // t is a testing.TB: not known not to return
	}
	return *answer, others
}

// accepted requests and requires an accepted answer.
func (e *env) accepted(t testing.TB, thing, api, payload string) (map[string]any, []sent) {
	t.Helper()
	a, others := e.request(t, thing, api, payload)
	if a.Topic != "$aws/things/"+thing+"/jobs/"+api+"/accepted" {
		t.Fatalf("%s %s: answer on %s: %v", api, payload, a.Topic, a.Payload)
	}
	return a.Payload, others
}

// rejected requests and returns the rejection's code and body.
func (e *env) rejected(t testing.TB, thing, api, payload string) (string, map[string]any) {
	t.Helper()
	a, others := e.request(t, thing, api, payload)
	if a.Topic != "$aws/things/"+thing+"/jobs/"+api+"/rejected" {
		t.Fatalf("%s %s: answer on %s, want rejected: %v", api, payload, a.Topic, a.Payload)
	}
	if len(others) != 0 {
		t.Fatalf("a rejection notified: %v", others)
	}
	code, _ := a.Payload["code"].(string)
	return code, a.Payload
}

func thingARN(name string) string { return "arn:aws:iot:us-east-1:123456789012:thing/" + name }

func (e *env) createJob(t testing.TB, id, doc string, things ...string) Job {
	t.Helper()
	var targets []string
	for _, th := range things {
		targets = append(targets, thingARN(th))
	}
	j, err := e.svc.CreateJob(CreateJobInput{JobID: id, Targets: targets, Document: doc})
	if err != nil {
		t.Fatalf("create job %s: %v", id, err)
	}
	return j
}

// topics lists the topics of msgs.
func topics(msgs []sent) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Topic)
	}
	return out
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

var brokerPrincipal = broker.Principal{ClientID: "box-1", ThingName: "box-1"}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
