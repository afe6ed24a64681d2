package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// logRec records log lines as JSON, from every goroutine.
type logRec struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *logRec) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *logRec) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines are the records logged so far.
func (r *logRec) lines(t *testing.T) []map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// aboveDebug are the records at Info or above.
func aboveDebug(lines []map[string]any) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["level"] != "DEBUG" {
			out = append(out, l)
		}
	}
	return out
}

// TestOneLinePerFailedConnect: a broker that drops every CONNECT gets one
// line per attempt, with the reason and the next retry, and nothing from
// paho above debug.
func TestOneLinePerFailedConnect(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, p, "127.0.0.1:0", nil)
	if err := b.srv.AddHook(&refuseConnect{}, nil); err != nil {
		t.Fatal(err)
	}
	rec := &logRec{}
	c := newTestClient(t, p, b.addr, func(o *Options) { o.Logger = rec.logger() })
	stop := runClient(t, c)
	for deadline := time.Now().Add(20 * time.Second); c.Stats().ConnectFailures < 4; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d failed attempts", c.Stats().ConnectFailures)
		}
	}
	stop()
	failures := c.Stats().ConnectFailures
	var n uint64
	for _, l := range aboveDebug(rec.lines(t)) {
		if l["msg"] != "mqtt connect failed" || l["err"] == nil || l["retry_in"] == nil {
			t.Errorf("unexpected line above debug: %v", l)
			continue
		}
		n++
	}
	if n != failures {
		t.Errorf("%d connect-failed lines for %d failed attempts, want one each", n, failures)
	}
}

// refuseConnect answers every CONNECT with "not authorized".
type refuseConnect struct{ mochi.HookBase }

func (h *refuseConnect) ID() string           { return "refuse" }
func (h *refuseConnect) Provides(b byte) bool { return b == mochi.OnConnect }
func (h *refuseConnect) OnConnect(*mochi.Client, packets.Packet) error {
	return packets.ErrNotAuthorized
}

// TestCleanStopQuiet: connecting and stopping logs nothing from paho above
// debug (no "error triggered EOF" at SIGTERM). The broker closing the
// socket after DISCONNECT races with paho's own close, so the stop is
// repeated: before paho's ERROR went to debug, some of 30 stops logged it.
func TestCleanStopQuiet(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, p, "127.0.0.1:0", nil)
	rec := &logRec{}
	for range 30 {
		c := newTestClient(t, p, b.addr, func(o *Options) { o.Logger = rec.logger() })
		stop := runClient(t, c)
		waitConnected(t, c)
		stop()
	}
	var paho int
	for _, l := range rec.lines(t) {
		if l["component"] == "paho" {
			paho++
		}
	}
	for _, l := range aboveDebug(rec.lines(t)) {
		switch l["msg"] {
		case "mqtt connected", "mqtt disconnected":
		default:
			t.Errorf("unexpected line above debug on a clean stop: %v", l)
		}
	}
	t.Logf("%d paho lines at debug", paho)
}

// TestTakeoverNamed: two clients with one client ID throw each other out;
// the log and the last error name the cause.
func TestTakeoverNamed(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, p, "127.0.0.1:0", nil)
	rec1, rec2 := &logRec{}, &logRec{}
	c1 := newTestClient(t, p, b.addr, func(o *Options) { o.Logger = rec1.logger() })
	c2 := newTestClient(t, p, b.addr, func(o *Options) { o.Logger = rec2.logger() })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range []*Client{c1, c2} {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
		checkNoLeak(t)
	}()
	named := func() bool {
		for _, c := range []*Client{c1, c2} {
			if strings.Contains(c.Stats().LastError, ErrClientIDTakeover.Error()) {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(30 * time.Second); !named(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no takeover named after 30 s; last errors %q, %q", c1.Stats().LastError, c2.Stats().LastError)
		}
	}
	found := false
	for _, l := range append(rec1.lines(t), rec2.lines(t)...) {
		if l["level"] == "WARN" && strings.Contains(l["msg"].(string), "another connection with this thing name") && l["client_id"] == "pi-RPI-0042" {
			found = true
		}
	}
	if !found {
		t.Error("no WARN line naming the takeover")
	}
}

// TestOneConnectionNotTakeover: a connection lost once is not a takeover.
func TestOneConnectionNotTakeover(t *testing.T) {
	rec := &logRec{}
	c := &Client{o: Options{ClientID: "x"}, log: rec.logger()}
	n := 0
	for range takeoverRuns - 1 {
		c.logReconnect(&n, time.Second, time.Second, false)
	}
	c.logReconnect(&n, takeoverWindow, time.Second, false) // a long one resets the run
	c.logReconnect(&n, time.Second, time.Second, false)
	for _, l := range rec.lines(t) {
		if l["level"] != "INFO" || l["msg"] != "mqtt reconnecting" {
			t.Errorf("line %v, want only mqtt reconnecting at INFO", l)
		}
	}
	if n != 1 {
		t.Errorf("run of short connections = %d, want 1", n)
	}
}
