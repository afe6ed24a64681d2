package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestRehearsal(t *testing.T) {
	for _, csr := range []bool{false, true} {
		var out bytes.Buffer
		if err := run(options{n: 6, parallel: 3, csr: csr, timeout: 2 * time.Minute}, &out); err != nil {
			t.Fatalf("csr=%v: %v\n%s", csr, err, out.String())
		}
		if !strings.Contains(out.String(), "provisioned 6/6") || !strings.Contains(out.String(), "devices/s") {
			t.Errorf("csr=%v: output:\n%s", csr, out.String())
		}
	}
	var out bytes.Buffer
	if err := run(options{n: 0, parallel: 1}, &out); err == nil {
		t.Error("n=0 accepted")
	}
}

func TestPercentile(t *testing.T) {
	lat := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[int]time.Duration{50: 5, 99: 10, 100: 10, 1: 1} {
		if got := percentile(lat, p); got != want {
			t.Errorf("p%d = %v, want %v", p, got, want)
		}
	}
}

// TestRehearsalJSON: -json prints exactly one JSON object, for a run that
// succeeds and for one that does not.
func TestRehearsalJSON(t *testing.T) {
	decode := func(t *testing.T, out *bytes.Buffer) report {
		t.Helper()
		dec := json.NewDecoder(out)
		dec.DisallowUnknownFields()
		var rep report
		if err := dec.Decode(&rep); err != nil {
			t.Fatalf("output is not one JSON report: %v\n%s", err, out.String())
		}
		if dec.More() {
			t.Fatalf("more after the JSON object:\n%s", out.String())
		}
		return rep
	}
	var out bytes.Buffer
	if err := run(options{n: 4, parallel: 2, timeout: 2 * time.Minute, json: true}, &out); err != nil {
		t.Fatalf("rehearsal: %v\n%s", err, out.String())
	}
	rep := decode(t, &out)
	if rep.Devices != 4 || rep.Provisioned != 4 || !rep.OK || len(rep.Failures) != 0 || rep.NotStarted != 0 ||
		rep.Latency == nil || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 || rep.PerSecond <= 0 || rep.Mode != "CreateKeysAndCertificate" {
		t.Errorf("report %+v", rep)
	}

	out.Reset()
	if err := run(options{n: 3, parallel: 1, timeout: time.Nanosecond, json: true}, &out); err == nil {
		t.Fatal("a rehearsal that provisioned nothing succeeded")
	}
	rep = decode(t, &out)
	failed := 0
	for _, f := range rep.Failures {
		failed += f.Count
		if f.Count != len(f.Serials) || f.Reason == "" {
			t.Errorf("failure %+v", f)
		}
	}
	if rep.OK || rep.Provisioned != 0 || rep.Latency != nil || failed+rep.NotStarted != 3 {
		t.Errorf("report of a run out of time: %+v", rep)
	}
}
