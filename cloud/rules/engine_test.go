package rules

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/rules/sql"
	"github.com/iotagent/iotagent/cloud/store"
)

const waitFor = 10 * time.Second

type msg struct {
	Topic   string
	Payload string
	QoS     byte
}

// sink collects what the actions publish and put.
type sink struct {
	mu      sync.Mutex
	pubs    []msg
	objects map[string]string
	pubErr  error
	got     chan struct{}
}

func newSink() *sink { return &sink{objects: map[string]string{}, got: make(chan struct{}, 100)} }

func (s *sink) publish(topic string, payload []byte, qos byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pubErr != nil {
		s.got <- struct{}{}
		return s.pubErr
	}
	s.pubs = append(s.pubs, msg{topic, string(payload), qos})
	s.got <- struct{}{}
	return nil
}

func (s *sink) put(bucket, key string, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if bucket != "archive" {
		s.got <- struct{}{}
		return errors.New("NoSuchBucket: the bucket " + bucket + " does not exist")
	}
	s.objects[bucket+"/"+key] = string(body)
	s.got <- struct{}{}
	return nil
}

func (s *sink) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-s.got:
		case <-time.After(waitFor):
			t.Fatalf("an action did not run within %v", waitFor)
		}
	}
}

func openDB(t testing.TB, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, "iotsim.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// start runs an Engine over a database in dir until the test ends.
func start(t *testing.T, dir string, s *sink, edit func(*Options)) *Engine {
	t.Helper()
	db := openDB(t, dir)
	o := Options{DB: db, Region: "us-east-1", Account: "123456789012", Publish: s.publish, PutObject: s.put,
		Now: func() time.Time { return time.UnixMilli(1700000000000) }}
	if edit != nil {
		edit(&o)
	}
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; _ = db.Close() })
	return e
}

func payload(t *testing.T, js string) Payload {
	t.Helper()
	var p Payload
	if err := json.Unmarshal([]byte(js), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRepublishWithTemplates(t *testing.T) {
	s := newSink()
	e := start(t, t.TempDir(), s, nil)
	if _, err := e.Create("alarms", payload(t, `{"sql":"SELECT *, topic(2) AS thing FROM 'alarms/+' WHERE armed = true","awsIotSqlVersion":"2016-03-23",
		"actions":[{"republish":{"topic":"notifications/${topic(2)}/${upper(kind)}","qos":1,"roleArn":"arn:aws:iam::123456789012:role/r"}}]}`)); err != nil {
		t.Fatal(err)
	}
	if ingest := e.HandleMessage(Source{ClientID: "box-1"}, "alarms/box-1", []byte(`{"armed":true,"kind":"motion"}`)); ingest {
		t.Error("alarms/box-1 taken for Basic Ingest")
	}
	e.HandleMessage(Source{ClientID: "box-1"}, "alarms/box-1", []byte(`{"armed":false,"kind":"motion"}`)) // WHERE false
	e.HandleMessage(Source{ClientID: "box-1"}, "telemetry/box-1", []byte(`{"armed":true}`))               // other topic
	s.wait(t, 1)
	want := []msg{{"notifications/box-1/MOTION", `{"armed":true,"kind":"motion","thing":"box-1"}`, 1}}
	// The action is counted after it returns, so after the sink saw it.
	waitMetrics(t, e, "alarms", func(m Metrics) bool { return m.Evaluated == 2 && m.ActionsSucceeded+m.ActionsFailed == 1 })
	s.mu.Lock()
	if d := cmp.Diff(want, s.pubs); d != "" {
		t.Errorf("published (-want +got):\n%s", d)
	}
	s.mu.Unlock()
	if m := e.Metrics().Rules["alarms"]; m.Evaluated != 2 || m.Matched != 1 || m.ActionsSucceeded != 1 || m.ActionsFailed != 0 {
		t.Errorf("metrics %+v", m)
	}
}

// waitMetrics polls a rule's counters until cond holds (the workers
// update them after the action's effect is visible).
func waitMetrics(t *testing.T, e *Engine, rule string, cond func(Metrics) bool) Metrics {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		m := e.Metrics().Rules[rule]
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("rule %s: metrics %+v never reached the condition", rule, m)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHTTPActionAndHeaders(t *testing.T) {
	type post struct {
		Body, Auth, Thing, CT string
	}
	posts := make(chan post, 10)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posts <- post{string(b), r.Header.Get("Authorization"), r.Header.Get("X-Thing"), r.Header.Get("Content-Type")}
	}))
	t.Cleanup(hs.Close)
	e := start(t, t.TempDir(), newSink(), nil)
	if _, err := e.Create("hook", payload(t, `{"sql":"SELECT kind FROM 'alarms/#'","actions":[{"http":{"url":"`+hs.URL+`/alarm",
		"headers":[{"key":"Authorization","value":"Bearer t0k"},{"key":"X-Thing","value":"${topic(2)}"}]}}]}`)); err != nil {
		t.Fatal(err)
	}
	e.HandleMessage(Source{}, "alarms/box-7", []byte(`{"kind":"motion","x":1}`))
	select {
	case p := <-posts:
		if d := cmp.Diff(post{`{"kind":"motion"}`, "Bearer t0k", "box-7", "application/json"}, p); d != "" {
			t.Errorf("post (-want +got):\n%s", d)
		}
	case <-time.After(waitFor):
		t.Fatal("the webhook got nothing")
	}
	waitMetrics(t, e, "hook", func(m Metrics) bool { return m.ActionsSucceeded == 1 })
}

func TestHTTPActionRefusesRemoteHosts(t *testing.T) {
	e := start(t, t.TempDir(), newSink(), nil)
	_, err := e.Create("remote", payload(t, `{"sql":"SELECT * FROM 'a'","actions":[{"http":{"url":"https://example.com/hook"}}]}`))
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrRemoteURL) || !strings.Contains(err.Error(), "--rules-http-remote") {
		t.Fatalf("Create with a remote URL: %v, want ErrRemoteURL naming the flag", err)
	}
	for _, u := range []string{"http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]:80/x"} {
		if err := checkURL(u, false); err != nil {
			t.Errorf("checkURL(%s): %v", u, err)
		}
	}
	if err := checkURL("ftp://127.0.0.1/x", false); err == nil {
		t.Error("checkURL accepted ftp")
	}
	e2 := start(t, t.TempDir(), newSink(), func(o *Options) { o.AllowRemoteHTTP = true })
	if _, err := e2.Create("remote", payload(t, `{"sql":"SELECT * FROM 'a'","actions":[{"http":{"url":"https://example.com/hook"}}]}`)); err != nil {
		t.Errorf("with AllowRemoteHTTP: %v", err)
	}
	// A host that comes from a template is checked when the rule runs.
	if _, err := e.Create("templated", payload(t, `{"sql":"SELECT * FROM 'a/+'","actions":[{"http":{"url":"http://${topic(2)}/x"}}]}`)); err != nil {
		t.Fatal(err)
	}
	e.HandleMessage(Source{}, "a/example.com", []byte(`{}`))
	m := waitMetrics(t, e, "templated", func(m Metrics) bool { return m.ActionsFailed == 1 })
	if !strings.Contains(m.LastFailure, "loopback") {
		t.Errorf("last failure %q, want the loopback refusal", m.LastFailure)
	}
}

func TestS3ActionAndErrorAction(t *testing.T) {
	s := newSink()
	e := start(t, t.TempDir(), s, nil)
	if _, err := e.Create("archive", payload(t, `{"sql":"SELECT * FROM 'telemetry/+'","actions":[
		{"s3":{"bucketName":"archive","key":"${topic(2)}/${timestamp()}.json","roleArn":"r"}},
		{"s3":{"bucketName":"missing","key":"k"}}],
		"errorAction":{"republish":{"topic":"errors/rules","qos":0}}}`)); err != nil {
		t.Fatal(err)
	}
	e.HandleMessage(Source{ClientID: "box-2"}, "telemetry/box-2", []byte(`{"t":21}`))
	s.wait(t, 3) // two puts, one error message
	m := waitMetrics(t, e, "archive", func(m Metrics) bool { return m.ErrorActionsRun == 1 })
	if m.ActionsSucceeded != 1 || m.ActionsFailed != 1 || m.ErrorActionFailed != 0 {
		t.Errorf("metrics %+v", m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := s.objects["archive/box-2/1700000000000.json"]; got != `{"t":21}` {
		t.Errorf("objects %v", s.objects)
	}
	if len(s.pubs) != 1 || s.pubs[0].Topic != "errors/rules" {
		t.Fatalf("error action published %v", s.pubs)
	}
	var em struct {
		RuleName, Topic, ClientID, Base64OriginalPayload, CloudwatchTraceID string
		Failures                                                            []map[string]string
	}
	if err := json.Unmarshal([]byte(s.pubs[0].Payload), &em); err != nil {
		t.Fatal(err)
	}
	orig, _ := base64.StdEncoding.DecodeString(em.Base64OriginalPayload)
	if em.RuleName != "archive" || em.Topic != "telemetry/box-2" || em.ClientID != "box-2" || string(orig) != `{"t":21}` ||
		em.CloudwatchTraceID == "" || len(em.Failures) != 1 || em.Failures[0]["failedAction"] != "S3Action" ||
		em.Failures[0]["failedResource"] != "missing" || !strings.Contains(em.Failures[0]["errorMessage"], "NoSuchBucket") {
		t.Errorf("error message %s", s.pubs[0].Payload)
	}
}

func TestFailedErrorActionCounted(t *testing.T) {
	s := newSink()
	s.pubErr = errors.New("broker closed")
	e := start(t, t.TempDir(), s, nil)
	if _, err := e.Create("r", payload(t, `{"sql":"SELECT * FROM 'a'","actions":[{"republish":{"topic":"b"}}],
		"errorAction":{"republish":{"topic":"c"}}}`)); err != nil {
		t.Fatal(err)
	}
	e.HandleMessage(Source{}, "a", []byte(`{}`))
	m := waitMetrics(t, e, "r", func(m Metrics) bool { return m.ErrorActionFailed == 1 })
	if m.ActionsFailed != 1 || m.LastFailure != "republish b: broker closed" {
		t.Errorf("metrics %+v", m)
	}
}

func TestBasicIngest(t *testing.T) {
	s := newSink()
	e := start(t, t.TempDir(), s, nil)
	if _, err := e.Create("ingest", payload(t, `{"sql":"SELECT *, topic() AS t FROM 'sensors/+'","actions":[{"republish":{"topic":"out/${topic(2)}"}}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Create("other", payload(t, `{"sql":"SELECT * FROM '#'","actions":[{"republish":{"topic":"everything"}}]}`)); err != nil {
		t.Fatal(err)
	}
	if !e.HandleMessage(Source{}, "$aws/rules/ingest/sensors/s1", []byte(`{"v":1}`)) {
		t.Error("a Basic Ingest topic was not reported as one")
	}
	if !e.HandleMessage(Source{}, "$aws/rules/nosuch/x", []byte(`{}`)) {
		t.Error("a Basic Ingest topic for no rule was not reported as one")
	}
	s.wait(t, 1)
	waitMetrics(t, e, "ingest", func(m Metrics) bool { return m.ActionsSucceeded == 1 })
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := cmp.Diff([]msg{{"out/s1", `{"v":1,"t":"sensors/s1"}`, 0}}, s.pubs); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if m := e.Metrics().Rules["other"]; m.Evaluated != 0 {
		t.Errorf("the # rule saw a Basic Ingest message: %+v", m)
	}
}

// TestQueueFullDropsAndCounts: with no worker running, a queue of 2 takes
// two messages and drops (and counts) the third; HandleMessage never blocks.
func TestQueueFullDropsAndCounts(t *testing.T) {
	db := openDB(t, t.TempDir())
	t.Cleanup(func() { _ = db.Close() })
	e, err := New(Options{DB: db, Publish: newSink().publish, QueueSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Create("r", payload(t, `{"sql":"SELECT * FROM 'a'","actions":[{"republish":{"topic":"b"}}]}`)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e.HandleMessage(Source{}, "a", []byte(`{}`))
	}
	m := e.Metrics()
	if m.Received != 3 || m.Dropped != 1 || m.Queued != 2 || m.Rules["r"].Dropped != 1 {
		t.Errorf("metrics %+v", m)
	}
}

func TestCRUDAndPersistence(t *testing.T) {
	dir := t.TempDir()
	s := newSink()
	db := openDB(t, dir)
	e, err := New(Options{DB: db, Region: "eu-west-1", Account: "111122223333", Publish: s.publish,
		Now: func() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.Create("r1", payload(t, `{"sql":"SELECT * FROM 'a'","actions":[{"republish":{"topic":"b"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.ARN != "arn:aws:iot:eu-west-1:111122223333:rule/r1" || r.AWSIoTSQLVersion != SQLVersion2015 {
		t.Errorf("created %+v", r)
	}
	if _, err := e.Create("r1", r.Payload); !errors.Is(err, ErrExists) {
		t.Errorf("second create: %v", err)
	}
	if err := e.Replace("r1", payload(t, `{"sql":"SELECT x FROM 'c'","description":"d","awsIotSqlVersion":"2016-03-23","actions":[]}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.SetDisabled("r1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Create("r2", payload(t, `{"sql":"SELECT * FROM 'a'","actions":[]}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.Delete("r2"); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{e.Delete("r2"), e.SetDisabled("nope", false), e.Replace("nope", r.Payload)} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
	}
	if e.HandleMessage(Source{}, "c", []byte(`{}`)); e.Metrics().Received != 0 {
		t.Error("a disabled rule got a message")
	}
	_ = db.Close()

	db = openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	e, err = New(Options{DB: db, Publish: s.publish})
	if err != nil {
		t.Fatal(err)
	}
	got := e.List()
	if len(got) != 1 || got[0].Name != "r1" || got[0].SQL != "SELECT x FROM 'c'" || got[0].Description != "d" ||
		!got[0].RuleDisabled || got[0].ARN != r.ARN || !got[0].CreatedAt.Equal(r.CreatedAt) {
		t.Errorf("after reopening: %+v", got)
	}
}

func TestCreateRefusals(t *testing.T) {
	e := start(t, t.TempDir(), newSink(), nil)
	for _, tc := range []struct {
		name, payload string
		want          error
		says          string
	}{
		{"bad-name", `{"sql":"SELECT * FROM 'a'","actions":[]}`, ErrInvalid, "^[a-zA-Z0-9_]+$"},
		{"r", `{"sql":"SELECT * FROM","actions":[]}`, sql.ErrParse, "topic filter"},
		{"r", `{"sql":"","actions":[]}`, ErrInvalid, "no sql"},
		{"r", `{"sql":"SELECT * FROM 'a'","awsIotSqlVersion":"2020","actions":[]}`, ErrInvalid, "awsIotSqlVersion"},
		{"r", `{"sql":"SELECT * FROM 'a'","actions":[{"lambda":{"functionArn":"x"}}]}`, ErrInvalid, "not lambda"},
		{"r", `{"sql":"SELECT * FROM 'a'","actions":[{"republish":{"topic":"b"},"s3":{"bucketName":"x","key":"k"}}]}`, ErrInvalid, "exactly one"},
		{"r", `{"sql":"SELECT * FROM 'a'","actions":[{"republish":{"topic":"b","qos":2}}]}`, ErrInvalid, "qos 2"},
		{"r", `{"sql":"SELECT * FROM 'a'","actions":[{"republish":{"topic":"b/${topic(1)"}}]}`, ErrInvalid, "closing"},
		{"r", `{"sql":"SELECT * FROM 'a'","actions":[{"republish":{"topic":"b/${nosuch()}"}}]}`, ErrInvalid, "unknown function"},
		{"r", `{"sql":"SELECT * FROM 'a'","actions":[{"s3":{"key":"k"}}]}`, ErrInvalid, "bucketName"},
	} {
		_, err := e.Create(tc.name, payload(t, tc.payload))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Create(%s, %s): %v, want %v saying %q", tc.name, tc.payload, err, tc.want, tc.says)
		}
	}
	if len(e.List()) != 0 {
		t.Errorf("refused rules were stored: %v", e.List())
	}
}

// TestFailuresAndDropsLogged: what the counters count is in iotsim's log
// too, with the totals.
func TestFailuresAndDropsLogged(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	s := newSink()
	s.pubErr = errors.New("no route")
	e := start(t, t.TempDir(), s, func(o *Options) { o.Logger = log })
	if _, err := e.Create("r", payload(t, `{"sql":"SELECT * FROM 'a'","actions":[{"republish":{"topic":"b"}}]}`)); err != nil {
		t.Fatal(err)
	}
	e.HandleMessage(Source{}, "a", []byte(`{}`))
	// The failure is logged after it is counted: wait for the line.
	const line = `msg="rule action failed" rule=r action=republish resource=b topic=a err="no route" failed_total=1`
	waitMetrics(t, e, "r", func(m Metrics) bool { return m.ActionsFailed == 1 && strings.Contains(buf.String(), line) })

	db := openDB(t, t.TempDir())
	t.Cleanup(func() { _ = db.Close() })
	e2, err := New(Options{DB: db, Publish: s.publish, QueueSize: 1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e2.Create("q", payload(t, `{"sql":"SELECT * FROM 'a'","actions":[]}`)); err != nil {
		t.Fatal(err)
	}
	e2.HandleMessage(Source{}, "a", []byte(`{}`))
	e2.HandleMessage(Source{}, "a", []byte(`{}`))
	if got := buf.String(); !strings.Contains(got, `msg="rules queue full: message dropped" topic=a rules=[q] dropped_total=1 queue_size=1`) {
		t.Errorf("log:\n%s", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
