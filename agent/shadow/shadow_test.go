package shadow_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/agent/shadow"
	cloudshadow "github.com/iotagent/iotagent/cloud/shadow"
	"github.com/iotagent/iotagent/cloud/store"
)

// loopback is a Transport that hands requests straight to iotsim's shadow
// service and its answers to the subscribed handlers.
type loopback struct {
	svc *cloudshadow.Service

	mu   sync.Mutex
	subs map[string]func(string, []byte)
	drop bool // lose every answer
}

func newLoopback(t *testing.T) *loopback {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	l := &loopback{subs: map[string]func(string, []byte){}}
	l.svc = cloudshadow.New(db, l.deliver, func() time.Time { return time.Unix(1700000000, 0) })
	return l
}

func (l *loopback) deliver(topic string, payload []byte) {
	l.mu.Lock()
	h, drop := l.subs[topic], l.drop
	l.mu.Unlock()
	if h != nil && !drop {
		h(topic, payload)
	}
}

func (l *loopback) Publish(_ context.Context, topic string, _ byte, payload []byte) error {
	l.svc.HandleRequest(topic, payload)
	return nil
}

func (l *loopback) Subscribe(filter string, _ byte, h func(string, []byte)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subs[filter] = h
	return nil
}

func newClient(t *testing.T, name string) (*shadow.Client, *loopback) {
	l := newLoopback(t)
	c := shadow.New(l, "box", name)
	if err := c.Subscribe(); err != nil {
		t.Fatal(err)
	}
	return c, l
}

func TestGetMissingIsNotFound(t *testing.T) {
	c, _ := newClient(t, "")
	if _, err := c.Get(context.Background()); !errors.Is(err, shadow.ErrNotFound) {
		t.Fatalf("Get on a new thing: %v, want ErrNotFound", err)
	}
}

func TestUpdateGetAndConflict(t *testing.T) {
	for _, name := range []string{"", "config"} {
		t.Run("shadow="+name, func(t *testing.T) {
			c, _ := newClient(t, name)
			ctx := context.Background()
			v, err := c.Update(ctx, shadow.State{Reported: map[string]any{"fw": "1.0"}}, 0)
			if err != nil || v != 1 {
				t.Fatalf("first Update = %d, %v; want version 1", v, err)
			}
			if _, err := c.Update(ctx, shadow.State{Reported: map[string]any{"fw": "1.1"}}, 7); !errors.Is(err, shadow.ErrConflict) {
				t.Fatalf("Update with a stale version: %v, want ErrConflict", err)
			}
			doc, err := c.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]any{"fw": "1.0"}, doc.State.Reported); diff != "" {
				t.Errorf("reported after a rejected update (-want +got):\n%s", diff)
			}
			if doc.Version != 1 || c.Version() != 1 {
				t.Errorf("versions: doc %d, client %d; want 1", doc.Version, c.Version())
			}
			var rej *shadow.Rejection
			_, err = c.Update(ctx, shadow.State{}, 0)
			if err != nil && !errors.As(err, &rej) {
				t.Fatalf("empty update: %v", err)
			}
		})
	}
}

func TestDeltasAndStaleOnes(t *testing.T) {
	c, l := newClient(t, "")
	if _, err := l.svc.Update("box", "", []byte(`{"state":{"desired":{"alarm":{"armed":true}}}}`)); err != nil {
		t.Fatal(err)
	}
	d := <-c.Deltas()
	if diff := cmp.Diff(map[string]any{"alarm": map[string]any{"armed": true}}, d.State); diff != "" || d.Version != 1 {
		t.Fatalf("delta v%d (-want +got):\n%s", d.Version, diff)
	}
	// A delta older than what the client has seen is dropped.
	if _, err := c.Update(context.Background(), shadow.State{Reported: map[string]any{"x": 1}}, 0); err != nil {
		t.Fatal(err)
	}
	for len(c.Deltas()) > 0 { // the reported-only update leaves the mismatch: a new delta
		<-c.Deltas()
	}
	l.deliver("$aws/things/box/shadow/update/delta", []byte(`{"version":1,"state":{"old":true}}`))
	select {
	case d := <-c.Deltas():
		t.Fatalf("stale delta delivered: %+v", d)
	default:
	}
}

func TestForeignAnswersAreIgnored(t *testing.T) {
	c, l := newClient(t, "")
	// Another client's answer on the shared topic must not satisfy our Get.
	l.deliver("$aws/things/box/shadow/get/accepted", []byte(`{"clientToken":"someone-else","version":99,"state":{}}`))
	l.deliver("$aws/things/box/shadow/get/rejected", []byte(`not json`))
	if _, err := c.Get(context.Background()); !errors.Is(err, shadow.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound from our own request", err)
	}
	if c.Version() != 0 {
		t.Errorf("version taken from a foreign answer: %d", c.Version())
	}
}

func TestNoAnswerHonoursContext(t *testing.T) {
	c, l := newClient(t, "")
	l.drop = true
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get with no answer: %v, want DeadlineExceeded", err)
	}
}

func TestSlowConsumerKeepsNewestDelta(t *testing.T) {
	c, l := newClient(t, "")
	for i := 0; i < 20; i++ {
		if _, err := l.svc.Update("box", "", []byte(`{"state":{"desired":{"n":`+strconv.Itoa(i)+`}}}`)); err != nil {
			t.Fatal(err)
		}
	}
	var last shadow.Delta
	for len(c.Deltas()) > 0 {
		last = <-c.Deltas()
	}
	if last.Version != 20 || last.State["n"] != json.Number("19") {
		t.Fatalf("newest delta kept = %+v, want version 20 with n=19", last)
	}
}
