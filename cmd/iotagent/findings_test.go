package main

import (
	"encoding/json"
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent/firstboot"
	"github.com/iotagent/iotagent/agent/jobs"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	cloudjobs "github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/ota"
)

// builtBinary builds cmd/iotagent once per test binary (or takes
// $IOTAGENT_BIN, to run these tests against another build).
func builtBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("IOTAGENT_BIN"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "iotagent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinaryFailuresSayWhy runs the silent failures through the
// built binary: each exits non-zero with a message on stderr naming the
// cause, and under --json an error object on stdout.
func TestBinaryFailuresSayWhy(t *testing.T) {
	bin := builtBinary(t)
	dir := t.TempDir()
	noClaim := filepath.Join(dir, "noclaim.json")
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("x"), 0o644)
	os.WriteFile(noClaim, []byte(`{"thing_name":"b","state_dir":"`+dir+`/state","mqtt":{"endpoint":"h","root_ca":"ca.pem"}}`), 0o644)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string // what stderr must say
		not    string // and must not
	}{
		{[]string{"provision", "--config", "/nonexistent"}, exitUsage, "config /nonexistent: read config: open /nonexistent: no such file", ""},
		{[]string{"provision", "--config", noClaim}, exitUsage, "no claim certificate: set provisioning.claim_cert", ""},
		{[]string{"defender", "report", "--dry-run", "--config", "/nonexistent"}, exitUsage, "config /nonexistent: read config", ""},
		{[]string{"status", "--config", "/nonexistent.json"}, exitUsage, "config /nonexistent.json: read config: open /nonexistent.json", "no one listens"},
		{[]string{"status", "--bogus"}, exitUsage, "unknown flag --bogus", ""},
		{[]string{"jobs"}, exitUsage, "iotagent jobs: missing the command", ""},
	} {
		cmd := exec.Command(bin, tc.args...)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tc.code || !strings.Contains(errOut.String(), tc.stderr) || tc.not != "" && strings.Contains(errOut.String(), tc.not) {
			t.Errorf("iotagent %s: exit %d, stderr %q; want exit %d saying %q", strings.Join(tc.args, " "), code, errOut.String(), tc.code, tc.stderr)
		}
		if len(tc.args) > 1 && tc.args[1] == "--bogus" && strings.Count(errOut.String(), "bogus") != 1 {
			t.Errorf("unknown flag reported %d times:\n%s", strings.Count(errOut.String(), "bogus"), errOut.String())
		}

		cmd = exec.Command(bin, append(tc.args, "--json")...)
		out.Reset()
		cmd.Stdout = &out
		cmd.Run()
		var e errorJSON
		if err := json.Unmarshal([]byte(out.String()), &e); err != nil || e.Code != tc.code || !strings.Contains(e.Error, tc.stderr) {
			t.Errorf("iotagent %s --json: %+v (%v) from %q", strings.Join(tc.args, " "), e, err, out.String())
		}
	}
	// Help everywhere, also for groups.
	for _, args := range [][]string{{"config", "-h"}, {"jobs", "-h"}, {"ota", "-h"}, {"cert", "-h"}, {"defender", "-h"}, {"version", "-h"}, {"help", "status"}, {"config", "validate", "-h"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || !strings.HasPrefix(string(out), "Usage: iotagent "+strings.Join(args[:len(args)-1], " ")) && !strings.HasPrefix(string(out), "Usage: iotagent "+args[len(args)-1]) {
			t.Errorf("iotagent %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestJSONEverywhere: the commands that refused --json take it.
func TestJSONEverywhere(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	bin := filepath.Join(dir, "bin")
	os.WriteFile(bin, []byte("\x7fELF not really"), 0o755)

	out, _, code := runSplit("ota", "init", "--json", "--state-dir", state, "--binary", bin, "--version", "1.2.3")
	var oi otaInitResult
	if code != exitOK || json.Unmarshal([]byte(out), &oi) != nil || oi.Version != "1.2.3" || oi.Dir != filepath.Join(state, "ota") {
		t.Errorf("ota init --json: exit %d\n%s", code, out)
	}
	boot := filepath.Join(dir, "boot")
	os.Mkdir(boot, 0o755)
	out, _, code = runSplit("firstboot", "--json", "--boot-dir", boot, "--state-dir", state)
	var fb firstbootResult
	if code != exitOK || json.Unmarshal([]byte(out), &fb) != nil || fb.BootDir != boot || fb.Adopted != "" {
		t.Errorf("firstboot --json: exit %d\n%s", code, out)
	}
	out, _, code = runSplit("completion", "fish", "--json")
	var comp map[string]string
	if code != exitOK || json.Unmarshal([]byte(out), &comp) != nil || comp["shell"] != "fish" || !strings.Contains(comp["script"], "complete -c iotagent") {
		t.Errorf("completion --json: exit %d\n%s", code, out)
	}
	out, _, code = runSplit("version", "--json")
	if code != exitOK || !json.Valid([]byte(out)) || !strings.Contains(out, `"version"`) {
		t.Errorf("version --json: exit %d\n%s", code, out)
	}
}

// TestProvisionRefusalSaysWhy: a refusal by the template exits 5 with the
// refusal and what to do on stderr, not only the INFO lines.
func TestProvisionRefusalSaysWhy(t *testing.T) {
	cfg, _ := provisionConfig(t, "")
	_, errOut, code := runSplit("provision", "--config", cfg, "--param", "SerialNumber=not a thing name")
	if code != exitRefused || !strings.Contains(errOut, "iotagent provision: ") || !strings.Contains(errOut, "InvalidParameters") ||
		!strings.Contains(errOut, "hint: the cloud refused for good") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
	out, _, _ := runSplit("provision", "--json", "--config", cfg, "--param", "SerialNumber=not a thing name")
	var e errorJSON
	if json.Unmarshal([]byte(out), &e) != nil || e.Code != exitRefused || e.Retryable {
		t.Errorf("--json: %+v from\n%s", e, out)
	}
}

// TestNoJobsServiceOnlyWhenNotProvided: an agent that does not answer is
// not said to lack a jobs service.
func TestNoJobsServiceOnlyWhenNotProvided(t *testing.T) {
	dir, err := os.MkdirTemp("", "cli")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	hung := filepath.Join(dir, "hung.sock")
	l, err := net.Listen("unix", hung)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	defer func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	}()
	for _, cmd := range [][]string{{"jobs", "list"}, {"ota", "status"}} {
		out, errOut, code := runSplit(append(cmd, "--socket", hung, "--timeout", "200ms", "--state-dir", dir)...)
		if code != exitNoAgent || strings.Contains(out+errOut, "this build has no") || !strings.Contains(errOut, "did not answer in time") {
			t.Errorf("%v: exit %d\n%s%s", cmd, code, out, errOut)
		}
	}
}

// TestOfflineFromStateDir: with the agent down, status, jobs list and ota
// status show what the state dir says (identity, the in-flight and the
// last job, a crash-looping OTA trial, the first-boot error), say the
// agent is down and exit 3; under --json the error object carries it.
func TestOfflineFromStateDir(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "offline-box")
	stateDir := otaBox(t, b, ota.Status{State: ota.Confirm, Active: "a", ActiveVersion: "0.9.0", Slot: "b",
		Release: ota.Release{Version: "1.4.0"}, FromVersion: "0.9.0", Starts: 1, MaxStarts: 3})
	write := func(rel, data string) {
		p := filepath.Join(stateDir, rel)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("jobs/inflight.json", `{"job_id":"job-7","execution_number":1,"operation":"reboot","marker":"rebooting"}`)
	last, _ := json.Marshal(jobs.LastJob{JobID: "job-6", Operation: "format-disk", Status: "REJECTED",
		Details: map[string]string{"reason": `unknown operation "format-disk"`}, EndedAt: fixedNow})
	write("jobs/last.json", string(last))
	write(firstboot.ErrorFile, `{"boot_dir":"/boot/firmware/iotagent","error":"config.json: thing_name: required","time":"2025-06-01T08:00:00Z"}`)
	cfg := []string{"--config", b.cfgPath}

	out, errOut, code := runSplit(append([]string{"status"}, cfg...)...)
	for _, want := range []string{"Agent       NOT RUNNING: the agent is not running", "from the state dir " + stateDir,
		"Identity    offline-box; certificate CN=", "days left", "in flight: job-7 (reboot), resumed at the next start",
		`last job-6 (format-disk) REJECTED at 2025-06-01 09:00:00 UTC: unknown operation "format-disk"`,
		"OTA         version 1.4.0 ON TRIAL in slot b (start 2 of 3); slot a (0.9.0) is the fallback",
		"First boot  NOT ADOPTED at 2025-06-01 08:00:00 UTC: config.json: thing_name: required (files left in /boot/firmware/iotagent)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status offline lacks %q:\n%s", want, out)
		}
	}
	if code != exitNoAgent || !strings.Contains(errOut, "shown: what the state dir "+stateDir+" says") {
		t.Errorf("status offline: exit %d, stderr %q", code, errOut)
	}

	out, _, code = runSplit(append([]string{"ota", "status"}, cfg...)...)
	if code != exitNoAgent || !strings.Contains(out, "NOT RUNNING") || !strings.Contains(out, "version 1.4.0 ON TRIAL in slot b") {
		t.Errorf("ota status offline: exit %d\n%s", code, out)
	}
	out, _, code = runSplit(append([]string{"ota", "status", "--json"}, cfg...)...)
	var e struct {
		errorJSON
		Offline struct {
			State, Slot, ReleaseVersion string
			InTrial                     bool `json:"in_trial"`
		} `json:"offline"`
	}
	if code != exitNoAgent || json.Unmarshal([]byte(out), &e) != nil || e.Code != exitNoAgent || !e.Retryable || e.Offline.State != "confirm" || !e.Offline.InTrial || e.Offline.Slot != "b" {
		t.Errorf("ota status --json offline: exit %d, %+v\n%s", code, e, out)
	}
	out, _, code = runSplit(append([]string{"jobs", "list", "--json"}, cfg...)...)
	var j struct {
		Offline struct {
			Last     struct{ ID, Outcome string } `json:"last"`
			InFlight struct {
				JobID string `json:"job_id"`
			} `json:"in_flight"`
		} `json:"offline"`
	}
	if code != exitNoAgent || json.Unmarshal([]byte(out), &j) != nil || j.Offline.Last.ID != "job-6" || j.Offline.Last.Outcome != "REJECTED" || j.Offline.InFlight.JobID != "job-7" {
		t.Errorf("jobs list --json offline: exit %d, %+v\n%s", code, j, out)
	}
}

// TestSensorsDirectNeedsOnlySensors: reading the sensors directly does not
// care that the rest of the config would not run an agent.
func TestSensorsDirectNeedsOnlySensors(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "sensor-box")
	b.set(t, "mqtt", "endpoint", "")
	b.set(t, "mqtt", "root_ca", "/nonexistent/ca.pem")
	out, errOut, code := runSplit("sensors", "read", "--direct", "--config", b.cfgPath)
	if code != exitOK || !strings.Contains(out, "read directly (no agent)") || !strings.Contains(out, "bme280 21.00 °C") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	b.set(t, "sensors", "bme280", map[string]any{"driver": "i2c", "address": 0x99})
	_, errOut, code = runSplit("sensors", "read", "--direct", "--config", b.cfgPath)
	if code != exitUsage || !strings.Contains(errOut, "sensors.bme280.address") || strings.Contains(errOut, "mqtt.endpoint") {
		t.Errorf("bad sensors section: exit %d\n%s", code, errOut)
	}
}

// TestManualRunThenDiagAndStatus: after the README's manual run (a config
// whose state_dir is the packaged one, run with --state-dir and the
// connection flags), status and diag given the same flags find the agent
// and its files.
func TestManualRunThenDiagAndStatus(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "manual-box")
	host, port, _ := net.SplitHostPort(sim.MQTTAddrs()[0])
	id := filepath.Join(b.dir, "identity")
	cfgPath := filepath.Join(b.dir, "packaged.json")
	os.WriteFile(cfgPath, []byte(`{"thing_name":"manual-box","state_dir":"/var/lib/iotagent",
		"mqtt":{"endpoint":"a1b2c3-ats.iot.eu-west-1.amazonaws.com","root_ca":"/etc/ssl/certs/ca-certificates.crt"},
		"sensors":{"motion":{"driver":"sim"},"bme280":{"driver":"sim"}}}`), 0o644)
	stateDir, err := os.MkdirTemp("", "st") // short: the socket goes in it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	flags := []string{"--config", cfgPath, "--state-dir", stateDir}
	conn := []string{"--endpoint", host, "--port", port, "--root-ca", filepath.Join(id, "root-ca.pem"),
		"--cert", filepath.Join(id, "device.crt"), "--key", filepath.Join(id, "device.key")}

	// The agent as iotagent run starts it with these flags.
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	ov := runFlags(fs)
	if err := fs.Parse(conn); err != nil {
		t.Fatal(err)
	}
	x := &inv{cfgPath: cfgPath, cfgExplicit: true, stateDir: stateDir}
	cfg, err := x.loadConfig(ov.apply)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LocalAPI.Socket != filepath.Join(stateDir, "iotagent.sock") {
		t.Fatalf("socket %s, want it in the state dir", cfg.LocalAPI.Socket)
	}
	out, errOut, code := runSplit(append(append([]string{"diag"}, flags...), conn...)...)
	if code != exitOK || !strings.Contains(out, "PASS  config       "+cfgPath+" is valid") || !strings.Contains(out, "PASS  mqtt") {
		t.Errorf("diag before the agent runs: exit %d\n%s%s", code, out, errOut)
	}
	startAgentCfg(t, cfg, flags)
	out, errOut, code = runSplit(append([]string{"status"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "Connected   since") {
		t.Errorf("status with the run's flags: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runSplit(append(append([]string{"diag"}, flags...), conn...)...)
	if code != exitOK || !strings.Contains(out, "PASS  agent        running and connected") {
		t.Errorf("diag with the agent running: exit %d\n%s%s", code, out, errOut)
	}
}

// TestJobRejectedForUnknownOperationListed: a job the agent rejects
// without a handler shows in jobs list as the last job.
func TestJobRejectedForUnknownOperationListed(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "jobs-box")
	startAgent(t, b)
	svc := sim.Jobs()
	if _, err := svc.CreateJob(cloudjobs.CreateJobInput{JobID: "format-1", Targets: []string{svc.ThingARN("jobs-box")}, Document: `{"operation":"format-disk"}`}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := iotagent("jobs", "list", "--json", "--config", b.cfgPath)
		var j struct {
			Last *struct{ ID, Operation, Outcome, Error string } `json:"last"`
		}
		if err == nil && json.Unmarshal([]byte(out), &j) == nil && j.Last != nil && j.Last.ID == "format-1" {
			if j.Last.Operation != "format-disk" || j.Last.Outcome != "REJECTED" || !strings.Contains(j.Last.Error, `unknown operation "format-disk"`) {
				t.Errorf("last job %+v", *j.Last)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rejected job never showed in jobs list: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond) // bounded poll of the agent's own answer
	}
	out, err := iotagent("jobs", "list", "--config", b.cfgPath)
	if err != nil || !strings.Contains(out, `last format-1 (format-disk) REJECTED at`) {
		t.Errorf("jobs list: %v\n%s", err, out)
	}
}
