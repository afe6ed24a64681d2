package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/sensors"
)

// simPart opens a simulated part of type typ through the registry, as the
// agent does, and returns it with its control.
func simPart(t *testing.T, name, typ string) (sensors.Sampler, sensors.SimControl) {
	t.Helper()
	d, ok := sensors.Lookup(typ)
	if !ok || d.Sim == nil {
		t.Fatalf("no simulated %s in the registry", typ)
	}
	p := sensors.Part{Name: name, Type: typ, Sim: true}
	h, ctl, err := d.Sim(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Open(context.Background(), p, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); ctl.Close() })
	return s, ctl
}

// sensorsJSON runs sensors read --json with args.
func sensorsJSON(t *testing.T, args ...string) localapi.Sensors {
	t.Helper()
	out, errOut, code := runSplit(append([]string{"sensors", "read", "--json"}, args...)...)
	var se localapi.Sensors
	if code != exitOK || json.Unmarshal([]byte(out), &se) != nil {
		t.Fatalf("sensors read --json: exit %d\n%s%s", code, out, errOut)
	}
	return se
}

// TestSensorsReadEveryPartLive: through the running agent, sensors read
// reads every sampled part now (not its last scheduled reading), and a
// part whose read fails says why while the others read.
func TestSensorsReadEveryPartLive(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "parts-box")
	delete(b.cfg, "sensors")
	b.set(t, "", "parts", map[string]any{
		"fridge": map[string]any{"type": "mcp9808", "sim": true, "interval_s": 3600},
		"cpu":    map[string]any{"type": "cpu_temp", "sim": true, "interval_s": 3600},
	})
	cfg, err := loadConfigWith(b.cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	fridge, fridgeSim := simPart(t, "fridge", "mcp9808")
	cpu, cpuSim := simPart(t, "cpu", "cpu_temp")
	flags := []string{"--config", b.cfgPath}
	startAgentHW(t, cfg, flags, map[string]sensors.Sampler{"fridge": fridge, "cpu": cpu})

	// The agent's scheduled reading (the sims' defaults), its last values
	// from now on: the next one is an hour away.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _, _ := runSplit(append([]string{"status", "--json"}, flags...)...)
		if strings.Contains(out, `"temperature_c": 21`) && strings.Contains(out, `"temperature_c": 45`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled readings of fridge and cpu:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := fridgeSim.Set("temperature_c", 7.25); err != nil {
		t.Fatal(err)
	}
	se := sensorsJSON(t, flags...)
	if se.Source != "live" || se.Parts["fridge"]["temperature_c"] != 7.25 || se.Parts["cpu"]["temperature_c"] != 45.0 {
		t.Errorf("sensors read after the fridge went to 7.25 °C: source %q, parts %v; want fridge 7.25 read now", se.Source, se.Parts)
	}
	if se.Parts["fridge"]["error"] != nil || se.Parts["cpu"]["error"] != nil {
		t.Errorf("errors in a good read: %v", se.Parts)
	}

	// The CPU's thermal zone turns to garbage: cpu reports why, with
	// what to check, and no stale value; the fridge still reads.
	if err := cpuSim.(interface{ WriteRaw(string) error }).WriteRaw("garbage\n"); err != nil {
		t.Fatal(err)
	}
	if err := fridgeSim.Set("temperature_c", 3.5); err != nil {
		t.Fatal(err)
	}
	se = sensorsJSON(t, flags...)
	cpuErr, _ := se.Parts["cpu"]["error"].(string)
	if !strings.Contains(cpuErr, `"garbage" is not a temperature in m°C`) || !strings.Contains(cpuErr, "check the simulated part's settings") {
		t.Errorf("cpu error %q, want the read's error and what to check", cpuErr)
	}
	if _, stale := se.Parts["cpu"]["temperature_c"]; stale {
		t.Errorf("cpu failed to read but shows a value: %v", se.Parts["cpu"])
	}
	if se.Parts["fridge"]["temperature_c"] != 3.5 {
		t.Errorf("fridge %v, want 3.5 read now beside cpu's failure", se.Parts["fridge"])
	}
	out, errOut, code := runSplit(append([]string{"sensors", "read"}, flags...)...)
	for _, want := range []string{"read now by the agent", "fridge: temperature_c 3.5\n", `cpu: READ FAILED: part "cpu" (cpu_temp thermal_zone0)`} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("sensors read: exit %d, lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
	// What the agent reports is its own scheduled reading, untouched.
	out, _, _ = runSplit(append([]string{"status", "--json"}, flags...)...)
	if !strings.Contains(out, `"temperature_c": 21`) || !strings.Contains(out, `"temperature_c": 45`) {
		t.Errorf("a live read changed the agent's reported state:\n%s", out)
	}
}

// TestSensorsReadEveryPartDirect: with no agent, sensors read opens every
// part of the config through the registry (simulated ones from their
// sim_values) and reads it, each part's failure said with what to check.
func TestSensorsReadEveryPartDirect(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "direct-box")
	parts := map[string]any{
		"fridge": map[string]any{"type": "mcp9808", "sim": true, "interval_s": 60, "sim_values": map[string]any{"temperature_c": 4.5}},
		"cpu":    map[string]any{"type": "cpu_temp", "sim": true},
		"gone":   map[string]any{"type": "cpu_temp", "device": "thermal_zone999", "interval_s": 60},
	}
	delete(b.cfg, "sensors")
	b.set(t, "", "parts", parts)
	flags := []string{"--config", b.cfgPath}
	se := sensorsJSON(t, flags...)
	gone, _ := se.Parts["gone"]["error"].(string)
	if se.Source != "direct" || se.Parts["fridge"]["temperature_c"] != 4.5 || se.Parts["cpu"]["temperature_c"] != 45.0 ||
		!strings.Contains(gone, "no /sys/class/thermal/thermal_zone999/temp") || !strings.Contains(gone, "check its wiring and that device \"thermal_zone999\" exists (parts.gone.device)") {
		t.Errorf("direct read: source %q, parts %v", se.Source, se.Parts)
	}
	parts["fridge"].(map[string]any)["sim_values"] = map[string]any{"temperature_c": -2.25}
	b.set(t, "", "parts", parts)
	out, errOut, code := runSplit(append([]string{"sensors", "read"}, flags...)...)
	for _, want := range []string{"read directly (no agent)", "fridge: temperature_c -2.25\n", "cpu: temperature_c 45\n", `gone: READ FAILED: open: part "gone"`} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("sensors read: exit %d, lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
	if !strings.Contains(errOut, "reading the hardware directly") {
		t.Errorf("stderr does not say the read is direct: %q", errOut)
	}
}

// gated is a sampler that holds the first read after arm until released,
// and counts reads that overlapped (the Sampler contract: one goroutine
// at a time).
type gated struct {
	sensors.Sampler
	inflight, overlaps atomic.Int32
	mu                 sync.Mutex
	hold               chan struct{}
	entered            chan struct{}
}

func (g *gated) arm(release chan struct{}) { g.mu.Lock(); g.hold = release; g.mu.Unlock() }

func (g *gated) Read(ctx context.Context) (sensors.Values, error) {
	if g.inflight.Add(1) > 1 {
		g.overlaps.Add(1)
	}
	defer g.inflight.Add(-1)
	g.mu.Lock()
	hold := g.hold
	g.hold = nil
	g.mu.Unlock()
	if hold != nil {
		g.entered <- struct{}{}
		<-hold
	}
	return g.Sampler.Read(ctx)
}

// TestSensorsReadWaitsForScheduledRead: a live read of a part whose
// scheduled read is under way waits for it, then reads the part itself,
// never at the same time.
func TestSensorsReadWaitsForScheduledRead(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "serial-box")
	delete(b.cfg, "sensors")
	b.set(t, "", "parts", map[string]any{"fridge": map[string]any{"type": "mcp9808", "sim": true, "interval_s": 1}})
	cfg, err := loadConfigWith(b.cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, ctl := simPart(t, "fridge", "mcp9808")
	g := &gated{Sampler: s, entered: make(chan struct{})}
	flags := []string{"--config", b.cfgPath}
	startAgentHW(t, cfg, flags, map[string]sensors.Sampler{"fridge": g})

	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the agent stops (cleanups run last first)
	g.arm(release)
	<-g.entered // the agent's next scheduled read, held
	got := make(chan string, 1)
	go func() {
		out, errOut, _ := runSplit(append([]string{"sensors", "read", "--json"}, flags...)...)
		got <- out + errOut
	}()
	select {
	case out := <-got:
		t.Fatalf("sensors read answered during the agent's read of the part (overlapping reads: %d):\n%s", g.overlaps.Load(), out)
	case <-time.After(300 * time.Millisecond): // time for a read that does not wait to overlap
	}
	if err := ctl.Set("temperature_c", 9.5); err != nil {
		t.Fatal(err)
	}
	free()
	out := <-got
	var se localapi.Sensors
	if err := json.Unmarshal([]byte(out), &se); err != nil {
		t.Fatalf("sensors read --json: %v\n%s", err, out)
	}
	if se.Parts["fridge"]["temperature_c"] != 9.5 || g.overlaps.Load() != 0 {
		t.Errorf("fridge %v, %d overlapping reads; want 9.5 read after the scheduled read, none overlapping", se.Parts["fridge"], g.overlaps.Load())
	}
}

// TestStatusShowsEveryPart: a push part with a role (active, no
// readings) has a line in status and sensors read beside the other parts,
// as the agent reports them; a GPIO input keeps its own line, once.
func TestStatusShowsEveryPart(t *testing.T) {
	se := localapi.Sensors{
		Inputs: []localapi.InputState{{Name: "pir", Active: false}},
		Parts: map[string]map[string]any{
			"bell":  {"active": true, "armed": true},
			"siren": {"active": false, "armed": false},
			"tank":  {"level_pct": 41.0},
			"pir":   {"active": false, "armed": true},
		},
	}
	var lines []string
	var b strings.Builder
	renderSensors(&b, se, func(label, format string, args ...any) {
		lines = append(lines, label+"|"+fmt.Sprintf(format, args...))
	})
	got := strings.Join(lines, "\n")
	want := "Sensors|pir: inactive\n|bell: active\n|siren: inactive, disarmed\n|tank: level_pct 41"
	if !strings.HasPrefix(got, want) {
		t.Errorf("sensors lines:\n%s\nwant them to start with:\n%s", got, want)
	}
}
