package main

import (
	"bytes"
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
