package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/provisioning"
)

func iotsim(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func checkCredentials(t *testing.T, dir, name string) {
	t.Helper()
	for file, mode := range map[string]os.FileMode{name + ".crt": 0o644, name + ".key": 0o600, "root-ca.pem": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Errorf("%s: %v", file, err)
		} else if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", file, fi.Mode().Perm(), mode)
		}
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm() != 0o700 {
		t.Errorf("cert dir mode %v, want 0700", fi.Mode().Perm())
	}
}

// The admin commands work on the data dir directly when no iotsim holds it.
func TestAdminCommandsOffline(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "sim")
	if out, err := iotsim(t, "thing", "create", "box-1", "--cert-out", t.TempDir()+"/x", "--data-dir", dataDir); err == nil {
		t.Fatalf("thing create on a data dir that never served succeeded: %s", out)
	} else if !strings.Contains(err.Error(), "iotsim serve") {
		t.Errorf("error %q does not say to run iotsim serve first", err)
	}
	sim := cloudtest.Start(t, dataDir)
	sim.Close()

	certDir := filepath.Join(t.TempDir(), "box-1")
	if out, err := iotsim(t, "thing", "create", "box-1", "--cert-out", certDir, "--data-dir", dataDir); err != nil {
		t.Fatalf("thing create: %v\n%s", err, out)
	}
	checkCredentials(t, certDir, "box-1")
	if out, err := iotsim(t, "shadow", "update", "box-1", `{"state":{"desired":{"alarm":{"armed":true}}}}`, "--data-dir", dataDir); err != nil {
		t.Fatalf("shadow update: %v\n%s", err, out)
	}
	out, err := iotsim(t, "shadow", "get", "box-1", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("shadow get: %v\n%s", err, out)
	}
	var doc struct {
		State struct {
			Delta map[string]any `json:"delta"`
		} `json:"state"`
		Version int `json:"version"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Version != 1 || doc.State.Delta == nil {
		t.Errorf("shadow get = %s (err %v), want version 1 with a delta", out, err)
	}
}

// While iotsim serves the data dir, the admin commands go through its REST API.
func TestAdminCommandsAgainstRunningSim(t *testing.T) {
	dataDir := t.TempDir()
	sim := cloudtest.Start(t, dataDir)
	certDir := filepath.Join(t.TempDir(), "box-2")
	if out, err := iotsim(t, "thing", "create", "box-2", "--cert-out", certDir, "--data-dir", dataDir); err != nil {
		t.Fatalf("thing create: %v\n%s", err, out)
	}
	checkCredentials(t, certDir, "box-2")
	principals, err := sim.Registry().ThingPrincipals("box-2")
	if err != nil || len(principals) != 1 {
		t.Fatalf("principals of box-2 = %v, %v; want one certificate", principals, err)
	}
	if out, err := iotsim(t, "shadow", "update", "box-2", "--name", "cfg", `{"state":{"reported":{"v":2}}}`, "--data-dir", dataDir); err != nil {
		t.Fatalf("shadow update: %v\n%s", err, out)
	}
	if _, err := sim.Shadows().Get("box-2", "cfg", nil); err != nil {
		t.Errorf("the running sim does not have the named shadow: %v", err)
	}
	// AWS's error words reach the user.
	out, err := iotsim(t, "shadow", "get", "nobody", "--data-dir", dataDir)
	if err == nil || !strings.Contains(err.Error(), "No shadow exists with name: 'nobody'") {
		t.Errorf("shadow get of a missing shadow: err %v, out %s", err, out)
	}
	out, err = iotsim(t, "shadow", "update", "box-2", `{"state":`, "--data-dir", dataDir)
	if err == nil || !strings.Contains(err.Error(), "Invalid JSON") {
		t.Errorf("shadow update with bad JSON: err %v, out %s", err, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"thing"}, {"thing", "create"}, {"shadow", "get"}, {"serve", "extra"}} {
		if out, err := iotsim(t, args...); err == nil {
			t.Errorf("iotsim %q succeeded: %s", args, out)
		}
	}
	if out, err := iotsim(t, "help"); err != nil || !strings.Contains(out, "iotsim serve") {
		t.Errorf("help: %v %s", err, out)
	}
}

// A thing made through the running sim's REST API gets the device policy,
// so its certificate may connect.
func TestThingCreatedRemotelyHasItsPolicy(t *testing.T) {
	dataDir := t.TempDir()
	sim := cloudtest.Start(t, dataDir)
	if out, err := iotsim(t, "thing", "create", "box-3", "--cert-out", t.TempDir(), "--data-dir", dataDir); err != nil {
		t.Fatalf("thing create: %v\n%s", err, out)
	}
	certs, err := sim.Registry().ThingPrincipals("box-3")
	if err != nil || len(certs) != 1 {
		t.Fatalf("principals: %v %v", certs, err)
	}
	c, err := sim.Registry().DescribeCertificate(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	ps, err := sim.Registry().EffectivePolicies(c.ID, "box-3")
	if err != nil || len(ps) != 1 || ps[0].Name != provisioning.DevicePolicyName {
		t.Fatalf("policies of box-3's certificate = %v, %v; want %s", ps, err, provisioning.DevicePolicyName)
	}
}

// `iotsim env` prints the exports that point the aws CLI at the running sim.
func TestEnv(t *testing.T) {
	dataDir := t.TempDir()
	sim := cloudtest.Start(t, dataDir)
	out, err := iotsim(t, "env", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("env: %v\n%s", err, out)
	}
	ep := sim.Endpoint()
	want := "export AWS_ACCESS_KEY_ID=" + ep.AWSAccessKeyID + "\n" +
		"export AWS_SECRET_ACCESS_KEY=" + shellQuote(ep.AWSSecretAccessKey) + "\n" +
		"export AWS_DEFAULT_REGION=us-east-1\n" +
		"export AWS_ENDPOINT_URL=" + ep.HTTPEndpoint + "\n"
	if out != want {
		t.Errorf("env printed\n%s\nwant\n%s", out, want)
	}
	if out, err := iotsim(t, "env", "--data-dir", filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "iotsim serve") {
		t.Errorf("env without a sim: %v %s", err, out)
	}
	if got := shellQuote("a'b c"); got != `'a'\''b c'` {
		t.Errorf("shellQuote = %s", got)
	}
}

// `iotsim serve --auth none` is refused on an address other hosts reach.
func TestServeAuthNoneRefusedOnNonLoopback(t *testing.T) {
	out, err := iotsim(t, "serve", "--data-dir", t.TempDir(), "--auth", "none", "--http-addr", "0.0.0.0:0", "--mqtt-addr", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("serve --auth none on 0.0.0.0: %v\n%s", err, out)
	}
	if _, err := iotsim(t, "serve", "--data-dir", t.TempDir(), "--auth", "maybe"); err == nil {
		t.Error("serve --auth maybe was accepted")
	}
}

// TestConsoleCommand prints the console's login URL of a running iotsim,
// and says why when there is none.
func TestConsoleCommand(t *testing.T) {
	dir := t.TempDir()
	if _, err := iotsim(t, "console", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "iotsim serve") {
		t.Errorf("console before serve: %v, want a hint to run iotsim serve", err)
	}
	sim := cloudtest.Start(t, dir)
	out, err := iotsim(t, "console", "--data-dir", dir)
	if err != nil || out != sim.Endpoint().ConsoleURL+"\n" || !strings.Contains(out, "?token=") {
		t.Errorf("console = %q, %v; want %q", out, err, sim.Endpoint().ConsoleURL)
	}
	sim.Close()
	off := t.TempDir()
	cloudtest.StartWith(t, cloud.Options{DataDir: off, NoConsole: true})
	if _, err := iotsim(t, "console", "--data-dir", off); err == nil || !strings.Contains(err.Error(), "--console-addr off") {
		t.Errorf("console with the console off: %v", err)
	}
}
