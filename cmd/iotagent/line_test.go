package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sensortest"
)

// lineFlags are the README's line example's flags for sim, with the
// sample config and state dir given.
func lineFlags(sim *cloud.Sim, stateDir, serial string, extra ...string) []string {
	ep := sim.Endpoint()
	host, port, _ := net.SplitHostPort(ep.MQTTEndpoint)
	return append([]string{"provision", "--config", filepath.Join("..", "..", "configs", "chocolate-box.json"),
		"--state-dir", stateDir, "--endpoint", host, "--port", port, "--root-ca", ep.RootCA,
		"--claim-cert", ep.ClaimCert, "--claim-key", ep.ClaimKey, "--template", ep.ProvisioningTemplate,
		"--param", "SerialNumber=" + serial}, extra...)
}

// TestLineTwoDevicesOneStation follows the README's line example for two
// boards on one station, with the sample config as it ships: each gets its
// own key and certificate under its own state dir, and `iotagent run` with
// that state dir connects as that thing.
func TestLineTwoDevicesOneStation(t *testing.T) {
	sim := cloudtest.Start(t, "")
	ep := sim.Endpoint()
	host, port, _ := net.SplitHostPort(ep.MQTTEndpoint)
	keys := map[string]string{}
	for _, serial := range []string{"box-0001", "box-0002"} {
		state := filepath.Join(t.TempDir(), serial)
		var out, errOut bytes.Buffer
		if err := run(lineFlags(sim, state, serial, "--csr"), &out, &errOut); err != nil {
			t.Fatalf("provision %s: %v\n%s", serial, err, errOut.String())
		}
		var res provisionResult
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("provision %s printed %q: %v", serial, out.String(), err)
		}
		wantKey := filepath.Join(state, "identity", "device.key")
		if res.ThingName != serial || res.KeyStore != "file:"+wantKey || res.Certificate != filepath.Join(state, "identity", "device.crt") {
			t.Errorf("provision %s = %+v, want thing %s, key and certificate under %s", serial, res, serial, state)
		}
		certPEM, err1 := os.ReadFile(res.Certificate)
		keyPEM, err2 := os.ReadFile(wantKey)
		if err1 != nil || err2 != nil {
			t.Fatalf("identity files of %s: %v, %v", serial, err1, err2)
		}
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Errorf("%s: certificate and key do not match: %v", serial, err)
		}
		for other, k := range keys {
			if k == string(keyPEM) {
				t.Errorf("%s has the same key as %s", serial, other)
			}
		}
		keys[serial] = string(keyPEM)

		// iotagent run --config (the sample) --state-dir: connects as the thing.
		fs, _, x := find2(t, "run").flagSet()
		if err := fs.Parse([]string{"--config", filepath.Join("..", "..", "configs", "chocolate-box.json"), "--state-dir", state}); err != nil {
			t.Fatal(err)
		}
		cfg, err := x.loadConfig(func(c *config.Config) { // what --thing-name, --endpoint, --port and --root-ca set
			c.ThingName = serial // the sample names chocolate-box-1, which the identity refuses
			c.MQTT.Endpoint, c.MQTT.RootCA = host, ep.RootCA
			c.MQTT.Port, _ = strconv.Atoi(port)
		})
		if err != nil {
			t.Fatalf("run's config: %v", err)
		}
		cfg.LocalAPI.Enabled = false
		env := sensortest.NewFakeSensor("bme280")
		env.Set(sensors.Reading{TemperatureC: 21.5, HumidityPct: 40, PressureKPa: 101.3})
		hw := &agent.Hardware{Motion: sensortest.NewFakeInput("motion"), Contact: sensortest.NewFakeInput("contact"), Env: env}
		a, err := agent.New(cfg, agent.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hardware: hw, Version: "line-test"})
		if err != nil {
			t.Fatalf("agent for %s: %v", serial, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		deadline := time.Now().Add(20 * time.Second)
		for {
			doc, err := sim.Shadows().Get(serial, "", nil)
			if err == nil && strings.Contains(string(doc), `"line-test"`) {
				break // the agent connected as serial and reported its version
			}
			select {
			case err := <-done:
				cancel()
				t.Fatalf("iotagent run for %s ended: %v", serial, err)
			default:
			}
			if time.Now().After(deadline) {
				cancel()
				<-done
				t.Fatalf("iotagent run --state-dir %s: no shadow report from %s within 20 s: %v", state, serial, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", serial, err)
		}
	}
}

// TestProvisionWrongTemplateFailsFast: a template the claim's policy does
// not allow ends within seconds with exit 5 and the diagnosis, and leaves
// nothing that stops a rerun with the right template.
func TestProvisionWrongTemplateFailsFast(t *testing.T) {
	sim := cloudtest.Start(t, "")
	state := filepath.Join(t.TempDir(), "state")
	wrong := append(lineFlags(sim, state, "box-0007", "--csr"), "--template", "factory-b")
	var out, errOut bytes.Buffer
	start := time.Now()
	err := run(wrong, &out, &errOut)
	took := time.Since(start)
	if got := exitCode(err); got != exitRefused {
		t.Fatalf("wrong template: exit %d (%v), want %d\n%s", got, err, exitRefused, errOut.String())
	}
	if took > 15*time.Second {
		t.Errorf("wrong template took %v to fail, want seconds", took.Round(time.Millisecond))
	}
	for _, want := range []string{"the broker closed the claim connection right after the SUBSCRIBE to $aws/provisioning-templates/factory-b/provision/json/accepted",
		`template "factory-b" is probably not one the claim certificate's policy allows`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("wrong template: %v\nwant it to say %q", err, want)
		}
	}
	if n := strings.Count(errOut.String(), "WARN"); n > 3 {
		t.Errorf("wrong template logged %d WARN lines:\n%s", n, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if err := run(lineFlags(sim, state, "box-0007", "--csr"), &out, &errOut); err != nil {
		t.Fatalf("rerun with the right template: %v\n%s", err, errOut.String())
	}
	var res provisionResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.ThingName != "box-0007" {
		t.Errorf("rerun printed %q (%v), want thing box-0007", out.String(), err)
	}
}
