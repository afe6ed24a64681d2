package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

func TestFaultCommands(t *testing.T) {
	dataDir := t.TempDir()
	sim := cloudtest.Start(t, dataDir)

	out, err := iotsim(t, "fault", "add", "--kind", "drop", "--packet", "puback", "--client", "box-*", "--topic", "alarms/#",
		"--count", "2", "--for", "10m", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("fault add: %v\n%s", err, out)
	}
	var st broker.FaultStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.ID != "f1" || st.Kind != "drop" || st.Count != 2 || !st.Active {
		t.Fatalf("fault add printed %s (%v)", out, err)
	}
	if got := sim.Broker().Faults().Faults; len(got) != 1 || got[0].Client != "box-*" || got[0].Topic != "alarms/#" {
		t.Errorf("broker holds %+v", got)
	}
	out, err = iotsim(t, "fault", "list", "--data-dir", dataDir)
	var r broker.FaultReport
	if err != nil || json.Unmarshal([]byte(out), &r) != nil || len(r.Faults) != 1 || r.Faults[0].ID != "f1" {
		t.Fatalf("fault list: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "--kind", "explode"}, `kind "explode"`},
		{[]string{"add", "--kind", "delay", "--packet", "suback"}, "kind delay needs a positive delay"},
		{[]string{"add", "--kind", "drop", "--packet", "puback", "--for", "soon"}, `invalid value "soon" for flag -for`},
		{[]string{"clear", "f9"}, "ResourceNotFoundException"},
		{[]string{"clear", "a", "b"}, "at most one ID"},
		{[]string{"explode"}, `unknown fault command "explode"`},
	} {
		out, err := iotsim(t, append(append([]string{"fault"}, tc.args...), "--data-dir", dataDir)...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("fault %v: %v\n%s\nwant an error naming %q", tc.args, err, out, tc.want)
		}
	}
	if out, err := iotsim(t, "fault", "clear", "--data-dir", dataDir); err != nil || strings.TrimSpace(out) != "{\n  \"cleared\": 1\n}" {
		t.Errorf("fault clear: %v\n%s", err, out)
	}
	if out, err := iotsim(t, "fault", "add", "--help"); err == nil || !strings.Contains(out, "-packet") || !strings.Contains(out, "refuse-connect") {
		t.Errorf("fault add --help: %v\n%s", err, out)
	}

	// Faults live in a running simulator only.
	sim.Close()
	if _, err := iotsim(t, "fault", "list", "--data-dir", dataDir); err == nil || !strings.Contains(err.Error(), "no iotsim is serving") {
		t.Errorf("fault list without iotsim: %v", err)
	}
}

func TestServeFaultsFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "faults.json")
	write := func(doc string) {
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"faults":[{"kind":"drop","packet":"puback"},{"id":"slow","kind":"delay","packet":"connack"}]}`)
	_, err := iotsim(t, "serve", "--faults", file, "--data-dir", filepath.Join(dir, "sim"), "--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), `faults[1] (id "slow")`) ||
		!strings.Contains(err.Error(), "positive delay") {
		t.Errorf("serve with a bad faults file: %v; want the file, the entry and the problem named", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sim")); !os.IsNotExist(err) {
		t.Errorf("serve created its data dir before rejecting the faults file (%v)", err)
	}
	_, err = iotsim(t, "serve", "--faults", filepath.Join(dir, "missing.json"), "--data-dir", filepath.Join(dir, "sim"))
	if err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("serve with a missing faults file: %v", err)
	}
	write(`{"faults":[{"kind":"disconnect","client":"box-*","after":"24h"},{"kind":"refuse-connect","code":135,"probability":0.1}]}`)
	fs, err := readFaults(file)
	if err != nil || len(fs) != 2 || fs[0].Kind != broker.FaultDisconnect || fs[1].Code != 135 {
		t.Errorf("readFaults = %+v, %v", fs, err)
	}
}

// TestReadmeFaultsFile: the fault file README.md shows is valid.
func TestReadmeFaultsFile(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "### Fault injection")
	if !ok {
		t.Fatal("README.md has no Fault injection section")
	}
	_, rest, ok = strings.Cut(rest, "```json\n")
	doc, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("the Fault injection section shows no fault file")
	}
	fs, err := broker.ParseFaults([]byte(doc))
	if err != nil || len(fs) != 6 {
		t.Errorf("README's fault file: %d faults, %v", len(fs), err)
	}
}
