package agent_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/internal/statefile"
)

// TestDamagedIdentityAfterProvisioning provisions a device through
// iotsim, damages its identity.json and starts it again. A torn file (the
// thing name still legible) is rebuilt from device.crt: the device
// connects as the same thing with the same certificate, and the shadow
// reports the recovery. Garbage cannot be rebuilt: the agent records why
// and what to do, and keeps running (trying to provision, which iotsim
// refuses while the old certificate is active, as AWS IoT does); after
// the documented fix (thing_name in the config) it connects as before.
func TestDamagedIdentityAfterProvisioning(t *testing.T) {
	for _, tc := range []struct {
		name, damaged string
		rebuilt       bool
	}{
		{"torn", `{"thingName": "SN-REC-1", "certificateId": "`, true},
		{"garbage", "\x00\x17garbage", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := cloudtest.Start(t, "")
			ep := sim.Endpoint()
			const serial = "SN-REC-1"
			obs := observe(sim, serial)
			dir := t.TempDir()
			host, port, _ := net.SplitHostPort(ep.MQTTEndpoint)
			cfg := config.Default()
			cfg.StateDir = filepath.Join(dir, "state")
			cfg.Identity.Cert = filepath.Join(cfg.StateDir, "identity", "device.crt")
			cfg.Identity.Key = filepath.Join(cfg.StateDir, "identity", "device.key")
			cfg.MQTT.Endpoint = host
			cfg.MQTT.Port, _ = strconv.Atoi(port)
			cfg.MQTT.RootCA = ep.RootCA
			cfg.LocalAPI.Socket = filepath.Join(dir, "iotagent.sock")
			cfg.Provisioning = config.Provisioning{ClaimCert: ep.ClaimCert, ClaimKey: ep.ClaimKey, Template: ep.ProvisioningTemplate,
				Params: map[string]string{"SerialNumber": serial}}
			d := &device{cfg: cfg, hw: &agent.Hardware{}}
			d.start(t, agent.Options{})
			waitFor(t, "a report from the provisioned thing", obs.reported, func(r map[string]any) bool { return path(r, "agent.version") != nil })
			d.stop()

			idFile := filepath.Join(cfg.StateDir, "identity", "identity.json")
			if err := os.WriteFile(idFile, []byte(tc.damaged), 0o600); err != nil {
				t.Fatal(err)
			}
			d.start(t, agent.Options{})
			if !tc.rebuilt {
				ev := waitEvent(t, cfg.StateDir, idFile)
				if !strings.Contains(ev.Action, "not rebuilt") || !strings.Contains(ev.Action, "set thing_name") {
					t.Errorf("event %+v; want what to do", ev)
				}
				d.stop() // still running: Run returns nil when stopped
				d.cfg.ThingName = serial
				d.start(t, agent.Options{})
			}
			waitFor(t, "reported.recovered naming identity.json", obs.reported, func(r map[string]any) bool {
				rec, _ := r["recovered"].([]any)
				for _, e := range rec {
					if m, _ := e.(map[string]any); m["file"] == idFile && strings.HasPrefix(m["moved_to"].(string), idFile+".corrupt-") {
						return true
					}
				}
				return false
			})
			waitFor(t, "telemetry as the same thing", obs.telemetry, func(m map[string]any) bool { return m["thing"] == serial })
			certs, err := sim.Registry().ThingPrincipals(serial)
			if err != nil || len(certs) != 1 {
				t.Errorf("certificates of %s: %v %v; want the one it had", serial, certs, err)
			}
		})
	}
}

// waitEvent polls the state journal for an event about file.
func waitEvent(t *testing.T, stateDir, file string) statefile.Event {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		evs, _ := statefile.Events(stateDir)
		for _, e := range evs {
			if e.File == file {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery of %s recorded", file)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
