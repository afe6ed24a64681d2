package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/sensors"
	_ "github.com/iotagent/iotagent/sensors/all" // the profiles' drivers
)

// testmeter is a registry driver for these tests: its simulation holds
// the readings; "fail" set to 1 makes reads fail, "nan" to 1 makes them
// return NaN.
func init() {
	sensors.Register(sensors.Driver{Type: "testmeter", Summary: "test driver",
		Open: func(_ context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
			m := meters.get(h.Root)
			if m == nil {
				return nil, errors.New("no such meter")
			}
			return m, nil
		},
		Sim: func(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
			m := &meter{v: sensors.Values{"temperature_c": 5}}
			meters.put(p.Name+fmt.Sprintf("%p", m), m)
			return sensors.Host{Root: p.Name + fmt.Sprintf("%p", m)}, m, nil
		}})
}

var meters = &meterSet{m: map[string]*meter{}}

type meterSet struct {
	mu sync.Mutex
	m  map[string]*meter
}

func (s *meterSet) get(k string) *meter    { s.mu.Lock(); defer s.mu.Unlock(); return s.m[k] }
func (s *meterSet) put(k string, m *meter) { s.mu.Lock(); defer s.mu.Unlock(); s.m[k] = m }

type meter struct {
	mu        sync.Mutex
	v         sensors.Values
	fail, nan bool
}

func (m *meter) Set(name string, v float64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch name {
	case "fail":
		m.fail = v != 0
	case "nan":
		m.nan = v != 0
	default:
		m.v[name] = v
	}
	return nil
}

func (m *meter) Read(context.Context) (sensors.Values, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return nil, errors.New("no answer at 0x40")
	}
	out := sensors.Values{}
	for k, v := range m.v {
		out[k] = v
	}
	if m.nan {
		out["temperature_c"] = math.NaN()
	}
	return out, nil
}

func (m *meter) Close() error { return nil }

// partsDevice prepares an agent for thing with the config file text
// data (its parts simulated), connected to sim.
func partsDevice(t *testing.T, sim *cloud.Sim, thing string, data []byte) *device {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	idDir := filepath.Join(dir, "identity")
	if err := cloud.WriteCredentials(idDir, "device", certPEM, keyPEM, sim.CA().CertPEM); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(sim.MQTTAddrs()[0])
	cfg, err := config.ParseWith(data, dir, func(c *config.Config) {
		c.ThingName = thing
		c.StateDir = filepath.Join(dir, "state")
		c.MQTT.Endpoint = host
		c.MQTT.Port, _ = strconv.Atoi(port)
		c.MQTT.RootCA = filepath.Join(idDir, "root-ca.pem")
		c.Identity.Cert = filepath.Join(idDir, "device.crt")
		c.Identity.Key = filepath.Join(idDir, "device.key")
		c.LocalAPI.Socket = filepath.Join(dir, "iotagent.sock")
		for name, p := range c.Parts {
			p.SimFIFO = ""                    // under the new state dir
			p.Sim = p.Type != config.TypePush // a Pi's profile on its simulated counterpart
			c.Parts[name] = p
		}
	})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return &device{cfg: cfg}
}

// fifo writes s to the simulated part's named pipe once the agent has
// made it.
func fifo(t *testing.T, d *device, part, s string) {
	t.Helper()
	path := filepath.Join(d.cfg.StateDir, "sim", part)
	deadline := time.Now().Add(waitLimit)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent never made %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// TestProfilesRunOnSimulatedDrivers runs each profile in configs/ against
// iotsim on its simulated drivers: every declared part is reported, each
// sensor with readings and no error, and in telemetry.
func TestProfilesRunOnSimulatedDrivers(t *testing.T) {
	files, err := filepath.Glob("../configs/*.json")
	if err != nil || len(files) < 4 {
		t.Fatalf("profiles: %v %v", files, err)
	}
	sim := cloudtest.Start(t, "")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := config.Parse(data, filepath.Dir(f))
			if err != nil {
				t.Fatal(err)
			}
			var missing []string
			for pn, p := range raw.Parts {
				if p.Sampled() {
					if _, ok := sensors.Lookup(p.Type); !ok {
						missing = append(missing, pn+" ("+p.Type+")")
					}
				}
			}
			if len(missing) > 0 {
				if os.Getenv("CI") == "true" {
					t.Fatalf("parts of types no driver registered: %v", missing)
				}
				t.Skipf("parts of types not registered yet (the drivers part of issue 15): %v", missing)
			}
			thing := "profile-" + name
			obs := observe(sim, thing)
			d := partsDevice(t, sim, thing, data)
			d.start(t, agent.Options{})
			var last map[string]any
			waitFor(t, "every part reported", obs.reported, func(r map[string]any) bool {
				last = r
				for _, p := range d.cfg.DeviceParts() {
					switch {
					case p.Type == config.TypeOutput:
						if _, ok := path(r, "outputs."+p.Name).(bool); !ok {
							return false
						}
					case p.Sampled():
						s, _ := path(r, "sensors."+p.Name).(map[string]any)
						if len(s) == 0 || s["error"] != nil || len(numbers(s)) == 0 {
							return false
						}
					default:
						if _, ok := path(r, "sensors."+p.Name+".active").(bool); !ok {
							return false
						}
					}
				}
				return true
			})
			tel := waitFor(t, "telemetry", obs.telemetry, func(map[string]any) bool { return true })
			for _, p := range d.cfg.DeviceParts() {
				if p.Sampled() && len(numbers(path(tel, "sensors."+p.Name))) == 0 {
					t.Errorf("telemetry has no readings of %s: %v", p.Name, tel)
				}
			}
			t.Logf("reported.sensors: %v", last["sensors"])
		})
	}
}

func numbers(v any) []float64 {
	m, _ := v.(map[string]any)
	var out []float64
	for k, x := range m {
		if f, ok := x.(float64); ok && k != "count" {
			out = append(out, f)
		}
	}
	return out
}

const partsConfig = `{
  "parts": {
    "probe":  {"type": "testmeter", "sim": true, "interval_s": 1,
               "limits": {"temperature_c": {"high": 10, "low": 0, "hysteresis": 1}, "temprature_c": {"high": 1}}},
    "broken": {"type": "testmeter", "sim": true, "interval_s": 1, "sim_values": {"fail": 1}},
    "silly":  {"type": "testmeter", "sim": true, "interval_s": 1, "sim_values": {"nan": 1}},
    "tank":   {"type": "push", "limits": {"level_pct": {"low": 20}}},
    "bell":   {"type": "push", "role": "alarm", "event": "ring", "message": "someone rang"},
    "flow":   {"type": "input", "sim": true, "role": "counter", "debounce_ms": 0},
    "door":   {"type": "input", "sim": true, "role": "state", "warn_after_s": 1},
    "pump":   {"type": "output", "sim": true}
  }
}`

// TestPartsEndToEnd: a device of several parts against iotsim. A part that
// fails or reads nonsense reports its error and stops no other part;
// limits raise and clear warnings with hysteresis; desired limits are
// validated and reported back; a local program's pushed readings and
// events take the same way; a counter keeps its count over a restart; a
// state input left active warns.
func TestPartsEndToEnd(t *testing.T) {
	sim := cloudtest.Start(t, "")
	obs := observe(sim, "parts-1")
	d := partsDevice(t, sim, "parts-1", []byte(partsConfig))
	d.cfg.Alarm.Armed = true
	d.start(t, agent.Options{})

	r := waitFor(t, "probe read, broken and silly in error", obs.reported, func(r map[string]any) bool {
		return path(r, "sensors.probe.temperature_c") == 5.0 && path(r, "sensors.broken.error") != nil && path(r, "sensors.silly.error") != nil
	})
	if e, _ := path(r, "sensors.broken.error").(string); !strings.Contains(e, "no answer at 0x40") || !strings.Contains(e, "check") {
		t.Errorf("broken's error = %q, want what is wrong and what to check", e)
	}
	if e, _ := path(r, "sensors.silly.error").(string); !strings.Contains(e, "temperature_c is NaN") {
		t.Errorf("silly's error = %q, want the NaN named", e)
	}
	// A limit in the config on a reading probe turns out not to have is
	// dropped at its first reading, and said.
	if s, _ := r["last_error"].(string); !strings.Contains(s, `sensors.probe.limits.temprature_c: dropped: probe has no reading "temprature_c" (it reads temperature_c)`) ||
		path(r, "sensors.probe.limits.temprature_c") != nil {
		t.Errorf("after probe's first reading: last_error %q, limits %v; want the typo's limit dropped and said", s, path(r, "sensors.probe.limits"))
	}
	if v := path(r, "sensors.silly.temperature_c"); v != nil {
		t.Errorf("a NaN reading was reported as a value: %v", v)
	}

	// Thresholds with hysteresis: 12 high, 9.5 still high (within 1 of
	// 10), 8.9 normal; -1 low.
	for _, v := range []string{"12", "9.5", "8.9", "-1"} {
		fifo(t, d, "probe", "temperature_c="+v+"\n")
		want, _ := strconv.ParseFloat(v, 64)
		waitFor(t, "probe at "+v, obs.reported, func(r map[string]any) bool {
			// -1 is reported with its warning, in the same update.
			return path(r, "sensors.probe.temperature_c") == want && (v != "-1" || path(r, "sensors.probe.warning.temperature_c") == "low")
		})
	}
	var events []string
	for range 3 {
		w := waitFor(t, "warning", obs.warnings, func(map[string]any) bool { return true })
		events = append(events, fmt.Sprint(w["sensor"], " ", w["event"], " ", w["temperature_c"]))
		if w["event"] == "temperature_high" && (w["max_c"] != 10.0 || w["message"] != "temperature 12.0 °C above 10.0 °C") {
			t.Errorf("high warning = %v", w)
		}
	}
	if want := "[probe temperature_high 12 probe temperature_normal 8.9 probe temperature_low -1]"; fmt.Sprint(events) != want {
		t.Errorf("warnings %v, want %s", events, want)
	}

	// Desired limits: a bad one refused and reported, a good one applied
	// and reported back.
	updateDesired(t, sim, "parts-1", `{"sensors":{"probe":{"limits":{"temperature_c":{"high":"hot"}}}}}`)
	waitFor(t, "refused limit", obs.reported, func(r map[string]any) bool {
		s, _ := r["last_error"].(string)
		return strings.Contains(s, "desired.sensors.probe.limits.temperature_c: high: want a number")
	})
	updateDesired(t, sim, "parts-1", `{"sensors":{"probe":{"limits":{"temperature_c":{"high":30,"low":-5}}}}}`)
	waitFor(t, "applied limit, warning cleared", obs.reported, func(r map[string]any) bool {
		return path(r, "sensors.probe.limits.temperature_c.high") == 30.0 && path(r, "sensors.probe.warning") == nil
	})
	if w := waitFor(t, "cleared", obs.warnings, func(map[string]any) bool { return true }); w["event"] != "temperature_normal" || w["min_c"] != -5.0 {
		t.Errorf("warning after the new limit = %v", w)
	}

	// A limit on a reading the part does not have (a typo) is refused
	// and named, not held and reported.
	updateDesired(t, sim, "parts-1", `{"sensors":{"probe":{"limits":{"temprature_c":{"high":30}}}}}`)
	r = waitFor(t, "refused typo", obs.reported, func(r map[string]any) bool {
		s, _ := r["last_error"].(string)
		return strings.Contains(s, `desired.sensors.probe.limits.temprature_c: probe has no reading "temprature_c" (it reads temperature_c)`)
	})
	if l := path(r, "sensors.probe.limits.temprature_c"); l != nil {
		t.Errorf("the typo's limit is reported as held: %v", l)
	}

	// A delta carries only the changed keys of a limit: {"hysteresis":2}
	// alone merges into the limit held.
	updateDesired(t, sim, "parts-1", `{"sensors":{"probe":{"limits":{"temprature_c":null,"temperature_c":{"high":30,"low":-5,"hysteresis":2}}}}}`)
	r = waitFor(t, "hysteresis applied", obs.reported, func(r map[string]any) bool {
		return path(r, "sensors.probe.limits.temperature_c.hysteresis") == 2.0
	})
	if path(r, "sensors.probe.limits.temperature_c.high") != 30.0 || path(r, "sensors.probe.limits.temperature_c.low") != -5.0 || strings.Contains(fmt.Sprint(r["last_error"]), "desired.") {
		t.Errorf("after the hysteresis delta: limit %v, last_error %v", path(r, "sensors.probe.limits.temperature_c"), r["last_error"])
	}

	// Pushed readings and events.
	c := localapi.NewClient(d.cfg.LocalAPI.Socket, 5*time.Second)
	ctx := context.Background()
	if err := c.Do(ctx, localapi.ActionPartsPush, localapi.Push{Part: "tank", Values: map[string]float64{"level_pct": 12}}, nil); err != nil {
		t.Fatalf("push tank: %v", err)
	}
	w := waitFor(t, "tank warning", obs.warnings, func(w map[string]any) bool { return w["sensor"] == "tank" })
	if w["event"] != "level_low" || w["min_pct"] != 20.0 {
		t.Errorf("tank warning = %v", w)
	}
	for _, bad := range []localapi.Push{{Part: "nope", Values: map[string]float64{"x": 1}}, {Part: "probe", Values: map[string]float64{"x": 1}}, {Part: "tank"}} {
		var le *localapi.Error
		if err := c.Do(ctx, localapi.ActionPartsPush, bad, nil); !errors.As(err, &le) || le.Code != "bad_request" {
			t.Errorf("push %+v: %v, want a bad request", bad, err)
		}
	}
	// A wrong value is named by its key, in the user's words.
	for body, want := range map[string]string{
		`{"part":"tank","values":{"level_pct":"41"}}`: `values.level_pct: must be a number, got "41"`,
		`{"part":"tank","values":[1]}`:                `values: want an object of readings, got an array`,
		`{"part":"bell","active":"yes"}`:              `active: want true or false, got "yes"`,
		`{"part":"tank","value":{"level_pct":1}}`:     `unknown key "value" (want part, values, active)`,
	} {
		var le *localapi.Error
		err := c.Do(ctx, localapi.ActionPartsPush, json.RawMessage(body), nil)
		if !errors.As(err, &le) || le.Code != "bad_request" || !strings.Contains(le.Message, want) || strings.Contains(le.Message, "Go ") || strings.Contains(le.Message, "json:") {
			t.Errorf("push %s: %v, want a bad request saying %s", body, err, want)
		}
	}
	on := true
	if err := c.Do(ctx, localapi.ActionPartsPush, localapi.Push{Part: "bell", Active: &on}, nil); err != nil {
		t.Fatalf("push bell: %v", err)
	}
	a := waitFor(t, "bell alarm", obs.alarms, func(map[string]any) bool { return true })
	if a["sensor"] != "bell" || a["event"] != "ring" || a["message"] != "someone rang" {
		t.Errorf("alarm = %v", a)
	}

	// A counter: three pulses.
	for i := 1; i <= 3; i++ {
		fifo(t, d, "flow", "1\n")
		waitFor(t, "pulse", obs.reported, func(r map[string]any) bool { return path(r, "sensors.flow.active") == true })
		fifo(t, d, "flow", "0\n")
		want := float64(i)
		waitFor(t, "count", obs.reported, func(r map[string]any) bool {
			return path(r, "sensors.flow.count") == want && path(r, "sensors.flow.active") == false
		})
	}

	// A door left open warns after warn_after_s.
	fifo(t, d, "door", "1\n")
	w = waitFor(t, "door warning", obs.warnings, func(w map[string]any) bool { return w["sensor"] == "door" })
	if w["sensor"] != "door" || w["event"] != "door_active_too_long" {
		t.Errorf("door warning = %v", w)
	}
	fifo(t, d, "door", "0\n")
	w = waitFor(t, "door normal", obs.warnings, func(w map[string]any) bool { return w["sensor"] == "door" })
	if w["event"] != "door_normal" {
		t.Errorf("door warning = %v", w)
	}

	// The count survives a restart.
	d.stop()
	d.start(t, agent.Options{})
	waitFor(t, "count after restart", obs.reported, func(r map[string]any) bool { return path(r, "sensors.flow.count") == 3.0 })
}
