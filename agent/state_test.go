package agent

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/shadow"
)

func baseSettings() Settings {
	high := 30.0
	return Settings{IntervalS: 60, LogLevel: "info", Outputs: map[string]bool{"led": false, "buzzer": false}, DefenderIntervalS: 300,
		Sensors: map[string]*PartSettings{
			"bme280": {Limits: map[string]config.Limit{"temperature_c": {High: &high}}, HasLimits: true},
			"motion": {Limits: map[string]config.Limit{}, Alarm: true, Armed: true},
		}}
}

func f64(f float64) *float64 { return &f }

func TestApplyDesired(t *testing.T) {
	tests := []struct {
		name         string
		desired      string
		want         func(*Settings)
		wantChanged  []string
		wantProblems []string
		readings     map[string]bool // bme280's known readings
	}{
		{name: "empty", desired: `{}`},
		{
			name:    "every setting",
			desired: `{"alarm":{"armed":true},"telemetry":{"interval_s":5},"sensors":{"bme280":{"limits":{"temperature_c":{"high":27.5},"humidity_pct":{"low":20,"high":80,"hysteresis":2}}},"motion":{"armed":false}},"log":{"level":"debug"},"outputs":{"led":true}}`,
			want: func(s *Settings) {
				s.Armed, s.IntervalS, s.LogLevel, s.Outputs["led"] = true, 5, "debug", true
				s.Sensors["bme280"].Limits["temperature_c"] = config.Limit{High: f64(27.5)}
				s.Sensors["bme280"].Limits["humidity_pct"] = config.Limit{High: f64(80), Low: f64(20), Hysteresis: 2}
				s.Sensors["motion"].Armed = false
			},
			wantChanged: []string{"alarm.armed", "log.level", "outputs.led", "sensors.bme280.limits.humidity_pct", "sensors.bme280.limits.temperature_c", "sensors.motion.armed", "telemetry.interval_s"},
		},
		{name: "a delta's partial limit merges into the limit held", desired: `{"sensors":{"bme280":{"limits":{"temperature_c":{"hysteresis":1}}}}}`,
			want: func(s *Settings) {
				s.Sensors["bme280"].Limits["temperature_c"] = config.Limit{High: f64(30), Hysteresis: 1}
			},
			wantChanged: []string{"sensors.bme280.limits.temperature_c"}},
		{name: "a null key removes that key of the limit", desired: `{"sensors":{"bme280":{"limits":{"temperature_c":{"high":null,"low":4}}}}}`,
			want:        func(s *Settings) { s.Sensors["bme280"].Limits["temperature_c"] = config.Limit{Low: f64(4)} },
			wantChanged: []string{"sensors.bme280.limits.temperature_c"}},
		{name: "a merged limit is checked as a whole", desired: `{"sensors":{"bme280":{"limits":{"temperature_c":{"low":31}}}}}`,
			wantProblems: []string{"desired.sensors.bme280.limits.temperature_c: low 31 must be below high 30"}},
		{name: "a limit on a reading the part does not have is refused once its readings are known",
			desired:  `{"sensors":{"bme280":{"limits":{"temprature_c":{"high":30},"humidity_pct":{"high":80}}}}}`,
			readings: map[string]bool{"temperature_c": true, "humidity_pct": true},
			want: func(s *Settings) {
				s.Sensors["bme280"].Limits["humidity_pct"] = config.Limit{High: f64(80)}
			},
			wantChanged:  []string{"sensors.bme280.limits.humidity_pct"},
			wantProblems: []string{`desired.sensors.bme280.limits.temprature_c: bme280 has no reading "temprature_c" (it reads humidity_pct, temperature_c)`}},
		{name: "a limit removed", desired: `{"sensors":{"bme280":{"limits":{"temperature_c":null}}}}`,
			want: func(s *Settings) { delete(s.Sensors["bme280"].Limits, "temperature_c") }, wantChanged: []string{"sensors.bme280.limits.temperature_c"}},
		{
			name:    "bad part settings are refused one by one",
			desired: `{"sensors":{"bme280":{"armed":true,"limits":{"temperature_c":{"high":10,"low":20},"humidity_pct":{"high":"x"},"Bad":{"high":1},"pressure_kpa":{"high":120,"hysteresis":-1},"lux":{}}},"motion":{"limits":{"x":{"high":1}},"armed":"yes"},"door":{"armed":true},"led":1}}`,
			wantProblems: []string{
				"desired.sensors.bme280.armed: bme280 is not an alarm input",
				"desired.sensors.bme280.limits.Bad: not a reading name: want 1 to 32 of a-z 0-9 _",
				"desired.sensors.bme280.limits.humidity_pct: high: want a number, got \"x\"",
				"desired.sensors.bme280.limits.lux: want \"high\", \"low\" or both",
				"desired.sensors.bme280.limits.pressure_kpa: hysteresis -1: want 0 or more",
				"desired.sensors.bme280.limits.temperature_c: low 20 must be below high 10",
				"desired.sensors.door: no part called \"door\" is configured",
				"desired.sensors.led: no part called \"led\" is configured",
				"desired.sensors.motion.armed: want true or false, got a string",
				"desired.sensors.motion.limits: motion has no readings",
			},
		},
		{name: "the old temperature.max_c says where it moved", desired: `{"temperature":{"max_c":25}}`,
			wantProblems: []string{"desired.temperature.max_c: moved: set desired.sensors.<name>.limits.temperature_c.high (see the migration in README.md)"}},
		{name: "same values change nothing", desired: `{"alarm":{"armed":false},"telemetry":{"interval_s":60}}`},
		{name: "defender interval", desired: `{"defender":{"interval_s":600}}`, want: func(s *Settings) { s.DefenderIntervalS = 600 }, wantChanged: []string{"defender.interval_s"}},
		{name: "defender interval too short", desired: `{"defender":{"interval_s":1}}`, wantProblems: []string{"desired.defender.interval_s: want a whole number of seconds from 5 to 86400, got 1"}},
		{name: "interval as whole float", desired: `{"telemetry":{"interval_s":10.0}}`, want: func(s *Settings) { s.IntervalS = 10 }, wantChanged: []string{"telemetry.interval_s"}},
		{
			name:         "wrong types are refused one by one",
			desired:      `{"alarm":{"armed":"yes"},"telemetry":{"interval_s":"fast"},"log":{"level":3},"outputs":{"led":1}}`,
			wantProblems: []string{"desired.alarm.armed: want true or false, got a string", "desired.log.level: want one of debug, info, warn, error, got 3", "desired.outputs.led: want true or false, got a number", "desired.telemetry.interval_s: want a whole number of seconds from 1 to 86400, got \"fast\""},
		},
		{
			name:         "out of range and fractional",
			desired:      `{"telemetry":{"interval_s":0.5},"sensors":{"bme280":{"limits":{"temperature_c":{"high":1e10}}}}}`,
			wantProblems: []string{"desired.sensors.bme280.limits.temperature_c: high and low must be numbers within ±1e9", "desired.telemetry.interval_s: want a whole number of seconds from 1 to 86400, got 0.5"},
		},
		{
			name:         "a bad key does not block a good one",
			desired:      `{"alarm":{"armed":true},"telemetry":{"interval_s":-1}}`,
			want:         func(s *Settings) { s.Armed = true },
			wantChanged:  []string{"alarm.armed"},
			wantProblems: []string{"desired.telemetry.interval_s: want a whole number of seconds from 1 to 86400, got -1"},
		},
		{
			name:         "unknown keys and sections",
			desired:      `{"colour":"red","alarm":{"volume":3},"outputs":{"siren":true},"telemetry":[1]}`,
			wantProblems: []string{"desired.alarm.volume: unknown setting", "desired.colour: unknown setting", "desired.outputs.siren: no output called \"siren\" is configured", "desired.telemetry: want an object, got an array"},
		},
		{name: "null section", desired: `{"alarm":null}`, wantProblems: []string{"desired.alarm: want an object, got null"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal([]byte(tt.desired), &d); err != nil {
				t.Fatal(err)
			}
			got, want := baseSettings(), baseSettings()
			got.Sensors["bme280"].Readings, want.Sensors["bme280"].Readings = tt.readings, tt.readings
			if tt.want != nil {
				tt.want(&want)
			}
			changed, problems := got.ApplyDesired(d)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantChanged, changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantProblems, problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// Values Go cannot hold (beyond float64 or int64, nested deeper than the
// decoder follows) are refused one by one, each with its path; every other
// key is applied.
func TestApplyDesiredValuesGoCannotHold(t *testing.T) {
	deep := strings.Repeat(`{"a":`, shadow.MaxDepth+5) + `1` + strings.Repeat(`}`, shadow.MaxDepth+5)
	d, err := shadow.DecodeObject([]byte(`{"evil":1e400,"alarm":{"armed":true},` +
		`"telemetry":{"interval_s":18446744073709551616},"sensors":{"bme280":{"limits":{"temperature_c":{"high":-1e400}}}},"log":{"level":` + deep + `}}`))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	s := baseSettings()
	changed, problems := s.ApplyDesired(d)
	if diff := cmp.Diff([]string{"alarm.armed"}, changed); diff != "" {
		t.Errorf("changed (-want +got):\n%s", diff)
	}
	want := []string{
		"desired.evil: unknown setting",
		"desired.log.level: want one of debug, info, warn, error, got {\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"...",
		"desired.sensors.bme280.limits.temperature_c: high: want a number, got -1e400",
		"desired.telemetry.interval_s: want a whole number of seconds from 1 to 86400, got 18446744073709551616",
	}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if !s.Armed || s.IntervalS != 60 || *s.Sensors["bme280"].Limits["temperature_c"].High != 30 || s.LogLevel != "info" {
		t.Errorf("settings = %+v", s)
	}
}

func TestJSONTextKeepsUTF8(t *testing.T) {
	got := jsonText(strings.Repeat("é", 100))
	if !utf8.ValidString(got) || len([]rune(got)) != 40 {
		t.Fatalf("jsonText = %q (%d runes), want 40 valid runes", got, len([]rune(got)))
	}
}

func FuzzApplyDesired(f *testing.F) {
	f.Add([]byte(`{"alarm":{"armed":true},"telemetry":{"interval_s":5}}`))
	f.Add([]byte(`{"outputs":{"led":true,"x":null},"log":{"level":"warn"}}`))
	f.Add([]byte(`{"temperature":{"max_c":1e308}}`))
	f.Add([]byte(`{"sensors":{"bme280":{"limits":{"temperature_c":{"high":1e308,"low":-1e308,"hysteresis":1}}},"motion":{"armed":false}}}`))
	f.Add([]byte(`{"evil":1e400,"alarm":{"armed":false},"telemetry":{"interval_s":18446744073709551616}}`))
	f.Add([]byte(`{"alarm":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := shadow.DecodeObject(data) // as the shadow client decodes desired
		if err != nil {
			return
		}
		s := baseSettings()
		_, problems := s.ApplyDesired(d)
		if s.IntervalS < minIntervalS || s.IntervalS > maxIntervalS || !contains(logLevels, s.LogLevel) || badLimits(s) {
			t.Fatalf("invalid settings applied: %+v", s)
		}
		if len(s.Outputs) != 2 {
			t.Fatalf("outputs grew: %v", s.Outputs)
		}
		for _, p := range problems {
			if !utf8.ValidString(p) {
				t.Fatalf("problem is not UTF-8: %q", p)
			}
		}
	})
}

// badLimits reports a limit desired state should have refused.
func badLimits(s Settings) bool {
	for _, ps := range s.Sensors {
		for r, l := range ps.Limits {
			if !config.ReadingName(r) || config.LimitProblem(l) != "" {
				return true
			}
		}
	}
	return len(s.Sensors) != 2
}
