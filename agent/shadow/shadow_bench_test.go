package shadow_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent/shadow"
	cloudshadow "github.com/iotagent/iotagent/cloud/shadow"
	"github.com/iotagent/iotagent/cloud/store"
)

// newLoopbackB is newLoopback for benchmarks.
func newLoopbackB(b *testing.B) *loopback {
	db, err := store.Open(filepath.Join(b.TempDir(), "s.db"), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	l := &loopback{subs: map[string]func(string, []byte){}}
	l.svc = cloudshadow.New(db, l.deliver, func() time.Time { return time.Unix(1700000000, 0) })
	return l
}

// reportedBox is the chocolate box's reported state, as the agent sends it.
var reportedBox = map[string]any{
	"agent":       map[string]any{"version": "v0.1.0"},
	"outbox":      map[string]any{"dropped": 0},
	"alarm":       map[string]any{"armed": true, "state": "off"},
	"telemetry":   map[string]any{"interval_s": 60},
	"temperature": map[string]any{"max_c": 30.0, "high": false},
	"log":         map[string]any{"level": "info"},
	"outputs":     map[string]any{"led": false, "buzzer": false},
	"sensors":     map[string]any{"motion": false, "lid_open": false, "temperature_c": 21.37, "humidity_pct": 45.02, "pressure_kpa": 101.33},
	"last_error":  "",
}

// echo is a Transport that answers every update at once with an
// update/accepted document carrying the request's token: what is left
// to measure is the device side of a reported update.
type echo struct {
	subs map[string]func(string, []byte)
}

func (e *echo) Subscribe(filter string, _ byte, h func(string, []byte)) error {
	e.subs[filter] = h
	return nil
}

func (e *echo) Publish(_ context.Context, topic string, _ byte, payload []byte) error {
	const key = `"clientToken":"`
	i := bytes.Index(payload, []byte(key))
	if i < 0 {
		return errors.New("no clientToken")
	}
	tok := payload[i+len(key):]
	tok = tok[:bytes.IndexByte(tok, '"')]
	ans := append([]byte(`{"state":{"reported":{"alarm":{"armed":true}}},"metadata":{},"version":12,"timestamp":1700000000,"clientToken":"`), tok...)
	e.subs[topic+"/accepted"](topic+"/accepted", append(ans, `"}`...))
	return nil
}

// BenchmarkUpdateRoundTrip is the device side of one reported update of
// the chocolate box: encode the request, match the accepted answer on its
// token and decode it.
func BenchmarkUpdateRoundTrip(b *testing.B) {
	e := &echo{subs: map[string]func(string, []byte){}}
	c := shadow.New(e, "box", "")
	if err := c.Subscribe(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Update(ctx, shadow.State{Reported: reportedBox}, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDelta is an incoming update/delta message: decode, the stale
// check and the hand-off to the agent.
func BenchmarkDelta(b *testing.B) {
	l := newLoopbackB(b)
	c := shadow.New(l, "box", "")
	if err := c.Subscribe(); err != nil {
		b.Fatal(err)
	}
	h := l.subs["$aws/things/box/shadow/update/delta"]
	if h == nil {
		b.Fatal("no delta subscription")
	}
	// The same version every time: a delta is stale only when older.
	msg := []byte(`{"version":7,"timestamp":1700000000,"state":{"temperature":{"max_c":31.5},"alarm":{"armed":true}},"metadata":{"temperature":{"max_c":{"timestamp":1700000000}},"alarm":{"armed":{"timestamp":1700000000}}}}`)
	b.ReportAllocs()
	for b.Loop() {
		h("$aws/things/box/shadow/update/delta", msg)
		<-c.Deltas()
	}
}
