package agent

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/agent/shadow"
)

func baseSettings() Settings {
	return Settings{IntervalS: 60, MaxC: 30, LogLevel: "info", Outputs: map[string]bool{"led": false, "buzzer": false}, DefenderIntervalS: 300}
}

func TestApplyDesired(t *testing.T) {
	tests := []struct {
		name         string
		desired      string
		want         func(*Settings)
		wantChanged  []string
		wantProblems []string
	}{
		{name: "empty", desired: `{}`},
		{
			name:    "every setting",
			desired: `{"alarm":{"armed":true},"telemetry":{"interval_s":5},"temperature":{"max_c":27.5},"log":{"level":"debug"},"outputs":{"led":true}}`,
			want: func(s *Settings) {
				s.Armed, s.IntervalS, s.MaxC, s.LogLevel, s.Outputs["led"] = true, 5, 27.5, "debug", true
			},
			wantChanged: []string{"alarm.armed", "log.level", "outputs.led", "telemetry.interval_s", "temperature.max_c"},
		},
		{name: "same values change nothing", desired: `{"alarm":{"armed":false},"telemetry":{"interval_s":60}}`},
		{name: "defender interval", desired: `{"defender":{"interval_s":600}}`, want: func(s *Settings) { s.DefenderIntervalS = 600 }, wantChanged: []string{"defender.interval_s"}},
		{name: "defender interval too short", desired: `{"defender":{"interval_s":1}}`, wantProblems: []string{"desired.defender.interval_s: want a whole number of seconds from 5 to 86400, got 1"}},
		{name: "interval as whole float", desired: `{"telemetry":{"interval_s":10.0}}`, want: func(s *Settings) { s.IntervalS = 10 }, wantChanged: []string{"telemetry.interval_s"}},
		{
			name:         "wrong types are refused one by one",
			desired:      `{"alarm":{"armed":"yes"},"telemetry":{"interval_s":"fast"},"temperature":{"max_c":true},"log":{"level":3},"outputs":{"led":1}}`,
			wantProblems: []string{"desired.alarm.armed: want true or false, got a string", "desired.log.level: want one of debug, info, warn, error, got 3", "desired.outputs.led: want true or false, got a number", "desired.telemetry.interval_s: want a whole number of seconds from 1 to 86400, got \"fast\"", "desired.temperature.max_c: want a number from -40 to 85, got true"},
		},
		{
			name:         "out of range and fractional",
			desired:      `{"telemetry":{"interval_s":0.5},"temperature":{"max_c":1000}}`,
			wantProblems: []string{"desired.telemetry.interval_s: want a whole number of seconds from 1 to 86400, got 0.5", "desired.temperature.max_c: want a number from -40 to 85, got 1000"},
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
		`"telemetry":{"interval_s":18446744073709551616},"temperature":{"max_c":-1e400},"log":{"level":` + deep + `}}`))
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
		"desired.telemetry.interval_s: want a whole number of seconds from 1 to 86400, got 18446744073709551616",
		"desired.temperature.max_c: want a number from -40 to 85, got -1e400",
	}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if !s.Armed || s.IntervalS != 60 || s.MaxC != 30 || s.LogLevel != "info" {
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
	f.Add([]byte(`{"evil":1e400,"alarm":{"armed":false},"telemetry":{"interval_s":18446744073709551616}}`))
	f.Add([]byte(`{"alarm":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := shadow.DecodeObject(data) // as the shadow client decodes desired
		if err != nil {
			return
		}
		s := baseSettings()
		_, problems := s.ApplyDesired(d)
		if s.IntervalS < minIntervalS || s.IntervalS > maxIntervalS || s.MaxC < minMaxC || s.MaxC > maxMaxC || !contains(logLevels, s.LogLevel) {
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
