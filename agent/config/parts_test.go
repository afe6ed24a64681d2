package config

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/sensors"
)

func init() {
	sensors.Register(sensors.Driver{Type: "cfgtest", Summary: "config tests",
		Open: func(context.Context, sensors.Part, sensors.Host) (sensors.Sampler, error) {
			return nil, errors.New("not here")
		},
		Sim: func(sensors.Part) (sensors.Host, sensors.SimControl, error) { return sensors.Host{}, nil, nil }})
	sensors.Register(sensors.Driver{Type: "cfgnosim", Summary: "config tests",
		Open: func(context.Context, sensors.Part, sensors.Host) (sensors.Sampler, error) {
			return nil, errors.New("not here")
		}})
}

// partsConfig parses a config whose "parts" is parts.
func partsConfig(t *testing.T, parts string) (Config, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("CA"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Parse([]byte(`{"thing_name": "t", "state_dir": "state",
		"mqtt": {"endpoint": "abc123-ats.iot.eu-west-1.amazonaws.com", "root_ca": "ca.pem"},
		"parts": `+parts+`}`), dir)
}

func TestPartsParse(t *testing.T) {
	c, err := partsConfig(t, `{
		"soil": {"type": "cfgtest", "bus": "1", "address": 72, "interval_s": 30,
		         "options": {"channels": [{"input": "0", "scale": -62.5}]},
		         "limits": {"soil_pct": {"low": 30, "hysteresis": 5}}},
		"door": {"type": "input", "sim": true, "role": "state", "warn_after_s": 120},
		"pump": {"type": "output", "pin": "GPIO5"}}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	ps := c.DeviceParts()
	if names := []string{ps[0].Name, ps[1].Name, ps[2].Name}; !slices.Equal(names, []string{"door", "pump", "soil"}) {
		t.Fatalf("parts %v, want sorted by name", names)
	}
	door, soil := ps[0], ps[2]
	if !door.Sim || door.SimFIFO != filepath.Join(c.StateDir, "sim", "door") || door.DebounceMs != 50 || door.Pull != "down" || !door.Armed {
		t.Errorf("door = %+v: want the defaults and its FIFO under state_dir", door)
	}
	var opts any
	if err := json.Unmarshal(soil.Options, &opts); err != nil || !reflect.DeepEqual(opts, map[string]any{"channels": []any{map[string]any{"input": "0", "scale": -62.5}}}) {
		t.Errorf("options = %s (%v): want the object as written", soil.Options, err)
	}
	if l := soil.Limits["soil_pct"]; l.Low == nil || *l.Low != 30 || l.High != nil || l.Hysteresis != 5 {
		t.Errorf("limit = %+v", l)
	}
}

// Every problem of the parts is listed with its path, at once.
func TestPartsValidate(t *testing.T) {
	c, err := partsConfig(t, `{
		"Bad Name": {"type": "output", "sim": true},
		"a": {"type": "input", "pin": "GPIO4", "role": "siren", "pull": "sideways", "debounce_ms": 20000},
		"b": {"type": "input", "pin": "GPIO4", "role": "counter", "warn_after_s": 5, "limits": {"x": {"high": 1}}},
		"c": {"type": "cfgtest", "bus": "/dev/../i2c 1", "address": 300, "interval_s": -1, "pin": "GPIO9",
		      "limits": {"t_c": {"high": 1, "low": 2}, "Bad": {"high": 1}, "h_pct": {}, "p": {"high": 10, "low": 0, "hysteresis": 20}}},
		"d": {"type": "nosuch"},
		"e": {"type": "cfgnosim", "sim": true},
		"f": {},
		"g": {"type": "output", "event": "x"},
		"h": {"type": "push", "role": "alarm", "message": "line\nbreak", "bus": "1"},
		"i": {"type": "cfgtest", "sim_values": {"t_c": 1}, "warn_after_s": 3}}`)
	if err != nil {
		t.Fatal(err)
	}
	got := paths(c.Validate())
	want := []string{
		"parts.Bad Name",
		"parts.a.pull", "parts.a.debounce_ms", "parts.a.role",
		"parts.b.pin", "parts.b.warn_after_s", "parts.b.limits",
		"parts.c.pin", "parts.c.bus", "parts.c.address", "parts.c.interval_s", "parts.c.limits.Bad", "parts.c.limits.h_pct", "parts.c.limits.p", "parts.c.limits.t_c",
		"parts.d.type",
		"parts.e.sim",
		"parts.f.type",
		"parts.g.pin", "parts.g.event",
		"parts.h.message", "parts.h.bus",
		"parts.i.sim_values", "parts.i.warn_after_s",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("problems at\n%v\nwant\n%v\n(%v)", got, want, c.Validate())
	}
	msg := c.Validate().Error()
	for _, s := range []string{`parts.d.type: unknown type "nosuch"`, "cfgtest", "GPIO4 is already used by parts.a", `low 2 must be below high 1`} {
		if !strings.Contains(msg, s) {
			t.Errorf("errors do not say %q:\n%s", s, msg)
		}
	}
}

func TestPartsDecodeErrors(t *testing.T) {
	_, err := partsConfig(t, `{"a": {"type": "input", "pinn": "GPIO4", "options": [1], "limits": {"x": {"high": "hot"}}}, "a": {}}`)
	got := paths(err)
	want := []string{"parts.a.pinn", "parts.a.options", "parts.a.limits.x.high", "parts.a"}
	if !slices.Equal(got, want) {
		t.Errorf("problems at %v, want %v (%v)", got, want, err)
	}
}

// The old "sensors" section is still read, as the chocolate box's parts;
// mixed with "parts" it is refused with how to migrate.
func TestLegacySensorsTranslate(t *testing.T) {
	c := validConfig(t)
	if !c.Legacy() {
		t.Fatal("Legacy() = false for a sensors section")
	}
	var got []string
	for _, p := range c.DeviceParts() {
		got = append(got, p.Name+":"+p.Type+":"+p.Role+":"+p.AlarmEvent()+":"+p.AlarmMessage()+":"+p.Pin)
	}
	want := []string{"bme280:bme280::bme280:bme280 active:", "buzzer:output::buzzer:buzzer active:GPIO22", "contact:input:alarm:lid_open:lid opened:GPIO17",
		"led:output::led:led active:GPIO27", "motion:input:alarm:motion:motion detected:GPIO4"}
	if !slices.Equal(got, want) {
		t.Errorf("parts\n%v\nwant\n%v", got, want)
	}
	for _, p := range c.DeviceParts() {
		if p.Name == "bme280" && (p.Limits["temperature_c"].High == nil || *p.Limits["temperature_c"].High != 30) {
			t.Errorf("bme280 limits %+v, want temperature.max_c as temperature_c's high", p.Limits)
		}
	}
	c.Parts = map[string]Part{"x": {Type: TypeOutput, Sim: true, SimFIFO: "/x"}}
	err := c.Validate()
	if !slices.Equal(paths(err), []string{"sensors"}) || !strings.Contains(err.Error(), "migration in README.md") {
		t.Errorf("sensors and parts: %v", err)
	}
}

// Every profile in configs/ parses and validates (types not registered in
// this test binary aside).
func TestProfilesValidate(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.json")
	if len(files) < 4 {
		t.Fatalf("profiles: %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(data, filepath.Dir(f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if c.Legacy() {
			t.Errorf("%s uses the old sensors section", f)
		}
		for _, fe := range FieldErrors(c.Validate()) {
			if strings.HasSuffix(fe.Path, ".type") || fe.Path == "mqtt.root_ca" {
				continue // drivers of sensors/all; a CA on the device
			}
			t.Errorf("%s: %v", f, fe)
		}
	}
}

func FuzzPartsDecode(f *testing.F) {
	f.Add([]byte(`{"a":{"type":"input","sim":true,"role":"alarm"},"b":{"type":"cfgtest","options":{"x":[1,{"y":2}]},"limits":{"t":{"high":1,"low":null}}}}`))
	f.Add([]byte(`{"a":{"options":{"a":"}"}}}`))
	f.Fuzz(func(t *testing.T, parts []byte) {
		c := Default()
		err := decodeStrict(append(append([]byte(`{"parts":`), parts...), '}'), &c)
		if err != nil {
			return
		}
		for name, p := range c.Parts {
			if len(p.Options) > 0 && !json.Valid(p.Options) {
				t.Fatalf("parts.%s.options = %q: not the JSON written", name, p.Options)
			}
		}
		_ = c.Validate() // never panics
	})
}
