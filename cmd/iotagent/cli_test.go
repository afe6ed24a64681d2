package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

var fixedNow = time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)

func TestStatusGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]json.RawMessage
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.golden", renderStatus(st, fixedNow))

	// an offline agent with a section that failed and no defender
	delete(st, "defender")
	st["connection"] = json.RawMessage(`{"endpoint":"a1b2c3-ats.iot.eu-west-1.amazonaws.com:8883","server_name":"a1b2c3-ats.iot.eu-west-1.amazonaws.com","client_id":"chocolate-box-1","connected":false,"last_attempt":"2025-06-01T08:59:30Z","connects":3,"connect_failures":9,"disconnects":3,"last_error":"dial a1b2c3-ats.iot.eu-west-1.amazonaws.com:8883: i/o timeout"}`)
	st["shadow"] = json.RawMessage(`{"version":7,"synced":true,"in_sync":false,"reported":{},"fetched_live":false,"cloud_error":"offline: not connected to a1b2c3-ats.iot.eu-west-1.amazonaws.com"}`)
	st["sensors"] = json.RawMessage(`{"code":"timeout","error":"context deadline exceeded"}`)
	// and a full disk: messages wait in memory
	disk := `the disk refuses writes since 2025-06-01T08:58:00Z (no space left on device); messages wait in memory (up to 1000)`
	st["agent"] = json.RawMessage(`{"version":"1.4.0","thing":"chocolate-box-1","pid":812,"goroutines":57,"started_at":"2025-06-01T08:00:00Z","log_level":"info","healthy":true,"degraded":["outbox: ` + disk + `"]}`)
	st["outbox"] = json.RawMessage(`{"depth":2,"bytes":412,"max_messages":10000,"max_bytes":16777216,"dropped":3,"dropped_telemetry":2,"dropped_warning":1,"dropped_alarm":0,"corrupt":0,"degraded":"` + disk + `","memory":14,"memory_max":1000}`)
	golden(t, "status-offline.golden", renderStatus(st, fixedNow))
}

func TestDiagGolden(t *testing.T) {
	results := []checkResult{
		{"config", pass, "/etc/iotagent/config.json is valid (thing chocolate-box-1)", ""},
		{"agent", pass, "not running (nothing on /run/iotagent/iotagent.sock): diag connects as the thing itself", ""},
		{"key store", pass, "file /var/lib/iotagent/identity/device.key signs (ECDSA P-256)", ""},
		{"certificate", fail, "CN=chocolate-box-1, issued by CN=iotsim CA: EXPIRED on 2025-05-01 00:00:00 UTC (31 days ago)", "issue a new certificate"},
		{"clock", warn, "2025-06-01 09:00:00 UTC, NOT NTP-synchronised", "enable time sync"},
		{"tls", skip, "needs TCP", ""},
	}
	golden(t, "diag.golden", renderDiag(results))
}

func TestCompletionGolden(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, err := iotagent("completion", sh)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "completion."+sh, out)
	}
	if _, err := iotagent("completion", "tcsh"); exitCode(err) != exitUsage {
		t.Errorf("completion tcsh: %v, want a usage error", err)
	}
}

func TestUsageGolden(t *testing.T) {
	out, err := iotagent("help")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "usage.golden", out)
	for _, c := range commands {
		if !strings.Contains(out, "iotagent "+c.name) && c.name != "help" {
			t.Errorf("usage does not mention %q", c.name)
		}
	}
}

// TestHelpEverywhere: -h on every command prints help and exits 0.
func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{
		{"run", "-h"}, {"status", "-h"}, {"sensors", "read", "-h"}, {"sensors", "watch", "--help"}, {"shadow", "get", "-h"},
		{"shadow", "resync", "-h"}, {"jobs", "list", "-h"}, {"ota", "status", "-h"}, {"logs", "-h"}, {"log-level", "-h"},
		{"diag", "-h"}, {"config", "validate", "-h"}, {"completion", "--help"}, {"help"},
	} {
		var out bytes.Buffer
		err := run(args, &out, &out)
		if exitCode(err) != exitOK || !strings.Contains(out.String(), "Usage") {
			t.Errorf("iotagent %s: exit %d (%v), output %q", strings.Join(args, " "), exitCode(err), err, out.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"bogus"}, {"status", "extra"}, {"status", "--bogus"}, {"sensors"}, {"sensors", "poke"}, {"shadow"}, {"shadow", "set"},
		{"jobs"}, {"ota", "list"}, {"log-level", "loud"}, {"logs", "-n", "x"}, {"config", "validate", "a", "b"},
		{"sensors", "watch", "--interval", "-1s"},
	} {
		if _, err := iotagent(args...); exitCode(err) != exitUsage {
			t.Errorf("iotagent %q: exit %d (%v), want %d", args, exitCode(err), err, exitUsage)
		}
	}
}

func TestFlagsFirst(t *testing.T) {
	fs, _, _ := find2(t, "config", "validate").flagSet()
	tests := []struct{ in, want []string }{
		{[]string{"f.json", "--json"}, []string{"--json", "f.json"}},
		{[]string{"x", "--config", "/c", "--json"}, []string{"--config", "/c", "--json", "x"}},
		{[]string{"--config=/c", "x", "--", "-y"}, []string{"--config=/c", "x", "-y"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, flagsFirst(fs, tt.in)); diff != "" {
			t.Errorf("flagsFirst(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// find2 is the command at path, or the test fails.
func find2(t *testing.T, path ...string) *command {
	t.Helper()
	c, n := find(path)
	if c == nil || n != len(path) {
		t.Fatalf("no command %q", path)
	}
	return c
}
