package main

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/sensors"
)

// TestCommandsWithAgent drives every client command against a real agent
// connected to iotsim.
func TestCommandsWithAgent(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "cli-box")
	env := startAgent(t, b)
	cfg := []string{"--config", b.cfgPath}
	cmd := func(args ...string) (string, error) { return iotagent(append(args, cfg...)...) }

	out, err := cmd("status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{"iotagent cli-test", "healthy", "Identity    cli-box; certificate CN=cli-box", "days left", "Key store   file ",
		"as client ID cli-box", "Connected   since", "Shadow      in sync (version", "bme280 21.50 °C", "Alarm       disarmed, off",
		"Jobs        on: download-file, reboot, restart-agent; none running", "OTA         off (ota.enabled is false); running cli-test", "Outbox      "} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, err = cmd("status", "--json")
	var st map[string]json.RawMessage
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st["connection"] == nil {
		t.Errorf("status --json: %v\n%s", err, out)
	}

	env.Set(sensors.Reading{TemperatureC: 33.25, HumidityPct: 50, PressureKPa: 100})
	out, err = cmd("sensors", "read")
	if err != nil || !strings.Contains(out, "read now by the agent") || !strings.Contains(out, "33.25 °C HIGH") {
		t.Errorf("sensors read: %v\n%s", err, out)
	}
	out, err = cmd("sensors", "watch", "--count", "2", "--interval", "1ms", "--json")
	if err != nil || strings.Count(out, `"source": "live"`) != 2 {
		t.Errorf("sensors watch --count 2: %v\n%s", err, out)
	}

	out, err = cmd("shadow", "get")
	if err != nil || !strings.Contains(out, "in sync") || !strings.Contains(out, `"version": "cli-test"`) {
		t.Errorf("shadow get: %v\n%s", err, out)
	}
	if out, err = cmd("shadow", "resync"); err != nil || !strings.Contains(out, "resync requested") {
		t.Errorf("shadow resync: %v\n%s", err, out)
	}
	if out, err = cmd("log-level", "debug"); err != nil || !strings.Contains(out, "log level debug until the agent restarts") {
		t.Errorf("log-level: %v\n%s", err, out)
	}
	if out, err = cmd("logs", "-n", "5"); err != nil || !strings.Contains(out, "log level set through the local API") || strings.Count(out, "\n") > 5 {
		t.Errorf("logs: %v\n%s", err, out)
	}
	if out, err = cmd("jobs", "list"); err != nil || !strings.Contains(out, "Jobs        on: download-file, reboot, restart-agent; none running") {
		t.Errorf("jobs list: exit %d, %v\n%s", exitCode(err), err, out)
	}
	if out, err = cmd("jobs", "list", "--json"); err != nil || !strings.Contains(out, `"enabled": true`) || !strings.Contains(out, `"restart-agent"`) {
		t.Errorf("jobs list --json: exit %d, %v\n%s", exitCode(err), err, out)
	}
	if out, err = cmd("ota", "status"); err != nil || !strings.Contains(out, "OTA         off (ota.enabled is false); running cli-test") {
		t.Errorf("ota status: exit %d, %v\n%s", exitCode(err), err, out)
	}
	if out, err = cmd("ota", "status", "--json"); err != nil || !strings.Contains(out, `"enabled": false`) {
		t.Errorf("ota status --json: exit %d, %v\n%s", exitCode(err), err, out)
	}
	// No template to register a new certificate with: a clear refusal.
	if _, err = cmd("cert", "rotate"); exitCode(err) != exitFail || !strings.Contains(err.Error(), "rotation.template") {
		t.Errorf("cert rotate without a template: exit %d, %v", exitCode(err), err)
	}
}

func TestCommandsWithoutAgent(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "offline-box")
	cfg := []string{"--config", b.cfgPath}

	for _, args := range [][]string{{"status"}, {"shadow", "get"}, {"logs"}, {"log-level", "info"}, {"jobs", "list"}} {
		_, err := iotagent(append(args, cfg...)...)
		if exitCode(err) != exitNoAgent || !strings.Contains(err.Error(), "the agent is not running") || !strings.Contains(err.Error(), b.socket) {
			t.Errorf("%v without an agent: exit %d, %v", args, exitCode(err), err)
		}
	}

	// sensors read works offline, reading the hardware directly
	var out, errOut strings.Builder
	err := run(append([]string{"sensors", "read"}, cfg...), &out, &errOut)
	if err != nil || !strings.Contains(out.String(), "read directly (no agent)") || !strings.Contains(out.String(), "bme280 21.00 °C") ||
		!strings.Contains(errOut.String(), "reading the hardware directly") {
		t.Errorf("sensors read offline: %v\n%s\n%s", err, out.String(), errOut.String())
	}

	// a daemon that accepts and never answers
	hung := filepath.Join(filepath.Dir(b.socket), "hung.sock")
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
	t.Cleanup(func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	_, err = iotagent("status", "--socket", hung, "--timeout", "300ms")
	if exitCode(err) != exitNoAgent || !strings.Contains(err.Error(), "did not answer in time") {
		t.Errorf("hung agent: exit %d, %v", exitCode(err), err)
	}

}

func TestConfigValidateFileAndJSON(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "cfg-box")
	if out, err := iotagent("config", "validate", b.cfgPath); err != nil || !strings.Contains(out, ": ok") {
		t.Errorf("config validate FILE: %v\n%s", err, out)
	}
	out, err := iotagent("config", "validate", b.cfgPath, "--json")
	if err != nil || !strings.Contains(out, `"valid": true`) {
		t.Errorf("config validate --json: %v\n%s", err, out)
	}
	b.set(t, "mqtt", "port", 0)
	b.set(t, "localapi", "group", "bad group")
	out, _, err = cliOut("config", "validate", "--json", b.cfgPath)
	var r validateResult
	if exitCode(err) != exitFail || json.Unmarshal([]byte(out), &r) != nil || r.Valid || len(r.Problems) != 2 {
		t.Errorf("invalid config --json: exit %d, %+v\n%s", exitCode(err), r, out)
	}
}
