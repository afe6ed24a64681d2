package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/internal/tmpfstest"
)

// shadowReported is the reported section of thing's classic shadow in sim.
func shadowReported(t *testing.T, sim *cloud.Sim, thing string) map[string]any {
	t.Helper()
	doc, err := sim.Shadows().Get(thing, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		State struct {
			Reported map[string]any `json:"reported"`
		} `json:"state"`
	}
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	return got.State.Reported
}

// logBuffer is an io.Writer for a test's logger, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// The state dir is a real tmpfs that fills up while iotsim is down: 20
// alarms are raised. The outbox keeps what the disk refuses in memory and
// the agent says it is degraded (log, status, shadow); iotsim comes back
// while the disk is still full: all 20 arrive; space comes back: the agent
// is no longer degraded, and nothing was dropped.
func TestFullDiskLosesNoAlarm(t *testing.T) {
	const thing, n = "box-full", 20
	dataDir := t.TempDir()
	sim, err := cloud.Start(cloud.Options{DataDir: dataDir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := sim.MQTTAddrs()[0]
	obs := observe(sim, thing)
	d := newDevice(t, sim, thing)
	d.cfg.StateDir = tmpfstest.Mount(t, 1<<20)
	d.cfg.Alarm.Armed = true
	d.cfg.MQTT.BackoffMaxS = 1
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	var logs logBuffer
	d.start(t, agent.Options{Now: func() time.Time { return time.Unix(clock.Add(1), 0) },
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	waitFor(t, "first report", obs.reported, func(map[string]any) bool { return true })
	waitFor(t, "first telemetry", obs.telemetry, func(map[string]any) bool { return true })
	d.waitStatus(t, "an empty outbox", func(s agent.Status) bool { return s.Outbox.Len == 0 })

	if err := sim.Close(); err != nil { // the network goes away
		t.Fatal(err)
	}
	free := tmpfstest.Fill(t, d.cfg.StateDir) // and the disk fills up
	for i := 0; i < n; i++ {
		d.motion.Trigger(true)
		d.motion.Trigger(false)
	}
	d.waitStatus(t, "the alarms queued, on disk or in memory", func(s agent.Status) bool {
		return s.Events == 2*n && s.Outbox.Len+s.Outbox.Memory == n && !s.Connected
	})
	if st := d.agent.Status(); st.Outbox.Memory == 0 || st.Outbox.Dropped != 0 {
		t.Fatalf("outbox %+v: want alarms in memory (the full disk refused them) and none dropped", st.Outbox)
	}
	degraded := strings.Join(d.agent.Degraded(), "; ")
	if !strings.Contains(degraded, "the disk refuses writes") || !strings.Contains(degraded, "no space left on device") {
		t.Errorf("Degraded() = %q, want the full disk named", degraded)
	}
	// iotagent status and diag read it from the local API.
	var ag localapi.Agent
	if err := localapi.NewClient(d.cfg.LocalAPI.Socket, 5*time.Second).Get(context.Background(), localapi.SectionAgent, &ag); err != nil {
		t.Fatalf("local API: %v", err)
	}
	if !ag.Healthy || len(ag.Degraded) != 1 || !strings.Contains(ag.Degraded[0], "no space left on device") {
		t.Errorf("local API agent section: healthy %v, degraded %q; want healthy (the watchdog stays petted) and degraded by the full disk", ag.Healthy, ag.Degraded)
	}
	logged := func() bool {
		l := logs.String()
		return strings.Contains(l, "the disk refuses writes") && strings.Contains(l, d.cfg.StateDir)
	}
	for deadline := time.Now().Add(waitLimit); !logged(); time.Sleep(10 * time.Millisecond) { // the watcher logs soon after
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say that the disk refuses writes in %s:\n%s", d.cfg.StateDir, logs.String())
		}
	}

	// iotsim comes back; the disk is still full.
	sim, err = cloud.Start(cloud.Options{DataDir: dataDir, MQTTAddr: addr, HTTPAddr: "127.0.0.1:0",
		BeforeListen: func(s *cloud.Sim) { obs.attach(s, thing) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	seen := map[float64]int{}
	for len(seen) < n {
		m := waitFor(t, fmt.Sprintf("alarm %d of %d", len(seen)+1, n), obs.alarms, func(map[string]any) bool { return true })
		ts, _ := m["timestamp"].(float64)
		seen[ts]++
	}
	// Whether the disk still refuses when the report goes out depends on
	// whether bbolt could reuse its own free pages by then: what it
	// refused, it reports in any case.
	waitFor(t, "the shadow told the disk refused writes", obs.reported, func(r map[string]any) bool {
		s, _ := path(r, "outbox.last_write_error").(string)
		f, _ := path(r, "outbox.write_failures").(float64)
		return strings.Contains(s, "no space left on device") && f > 0
	})

	free()
	deadline := time.Now().Add(waitLimit)
	for d.agent.Degraded() != nil || d.agent.Status().Outbox.Memory != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still degraded %s after space came back: %v", waitLimit, d.agent.Degraded())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var r map[string]any
	for r == nil || path(r, "outbox.degraded") != "" {
		if time.Now().After(deadline) {
			t.Fatalf("the shadow still says %v", r["outbox"])
		}
		time.Sleep(10 * time.Millisecond)
		r = shadowReported(t, sim, thing)
	}
	if path(r, "outbox.dropped") != 0.0 || path(r, "outbox.dropped_by_class.alarm") != 0.0 {
		t.Errorf("reported outbox = %v, want nothing dropped", r["outbox"])
	}
	for len(obs.alarms) > 0 { // duplicates allowed (at least once), but no new alarm
		m := <-obs.alarms
		ts, _ := m["timestamp"].(float64)
		seen[ts]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct alarms arrived, want %d", len(seen), n)
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	t.Logf("%d alarms delivered (%d duplicates)", len(seen), dups)
}
