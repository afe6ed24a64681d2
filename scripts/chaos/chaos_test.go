package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
)

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"Name:\tiotagent\nVmPeak:\t  1269640 kB\nVmRSS:\t    14232 kB\nThreads:\t8\n", 14232, ""},
		{"VmRSS: 0 kB\n", 0, ""},
		{"Name:\tkworker\nThreads:\t1\n", 0, "no VmRSS line"},
		{"VmRSS:\t14232\n", 0, `want "N kB"`},
		{"VmRSS:\t-3 kB\n", 0, "not a size"},
		{"VmRSS:\tlots kB\n", 0, "not a size"},
	} {
		got, err := parseVmRSS([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseVmRSS(%q) = %d, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseVmRSS(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseVmRSS(nil); !errors.Is(err, errNoRSS) {
		t.Errorf("parseVmRSS(nil): %v, want errNoRSS", err)
	}
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t    14232 kB\n"))
	f.Add([]byte("VmRSS:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseVmRSS(b)
		if err == nil && n < 0 {
			t.Errorf("parseVmRSS(%q) = %d, a negative size", b, n)
		}
	})
}

func TestDrift(t *testing.T) {
	// 20 samples: windows of 3 (a tenth is 2, at least 3).
	flat := []int64{100, 100, 300, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 900, 100}
	if f, l, d, ok := drift(flat); !ok || f != 100 || l != 100 || d != 0 {
		t.Errorf("drift(flat with spikes) = %d %d %d %v, want 100 100 0 true", f, l, d, ok)
	}
	var growing []int64
	for i := range 40 {
		growing = append(growing, 1000+int64(i)*10)
	}
	// windows of 4: medians of 1000..1030 and 1360..1390
	if f, l, d, ok := drift(growing); !ok || f != 1015 || l != 1375 || d != 360 {
		t.Errorf("drift(growing) = %d %d %d %v, want 1015 1375 360 true", f, l, d, ok)
	}
	if _, _, _, ok := drift([]int64{1, 2, 3, 4, 5}); ok {
		t.Error("drift of 5 samples: ok, want not ok")
	}
}

func TestDifferences(t *testing.T) {
	want := desiredState(3)
	got := map[string]any{
		"alarm":     map[string]any{"armed": true, "state": "on"},
		"telemetry": map[string]any{"interval_s": 2.0},
		"sensors":   map[string]any{"bme280": map[string]any{"temperature_c": 30.0, "limits": map[string]any{"temperature_c": map[string]any{"high": 31.0, "hysteresis": 0.0}}}},
		"outputs":   map[string]any{"led": true, "buzzer": false},
	}
	if d := differences("", want, got); len(d) != 0 {
		t.Errorf("differences = %q, want none", d)
	}
	got["outputs"] = map[string]any{"led": false}
	delete(got, "telemetry")
	d := differences("", want, got)
	if len(d) != 2 || !strings.Contains(strings.Join(d, ";"), "outputs.led: reported false, desired true") ||
		!strings.Contains(strings.Join(d, ";"), "telemetry.interval_s: reported <nil>, desired 2") {
		t.Errorf("differences = %q, want outputs.led and telemetry.interval_s", d)
	}
}

// TestClassesValid: every class's faults, aimed as the run aims them,
// pass iotsim's validation, and the names are unique.
func TestClassesValid(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range broker.FaultClasses {
		if seen[c.Name] {
			t.Errorf("class %s twice", c.Name)
		}
		seen[c.Name] = true
		for _, f := range c.Aimed(thing, 3*time.Second) {
			if f.Client != thing {
				t.Errorf("%s: fault aimed at %q, want %q", c.Name, f.Client, thing)
			}
			if c.Timed && f.Duration != broker.Duration(3*time.Second) {
				t.Errorf("%s: timed fault lasts %v, want 3s", c.Name, time.Duration(f.Duration))
			}
			if err := f.Validate(); err != nil {
				t.Errorf("%s: %v", c.Name, err)
			}
		}
	}
	if broker.FaultClasses[0].Name != "none" || len(broker.FaultClasses[0].Faults) != 0 {
		t.Errorf("the first class is %q with %d faults, want the baseline none", broker.FaultClasses[0].Name, len(broker.FaultClasses[0].Faults))
	}
}
