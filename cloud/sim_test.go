package cloud_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/console"
)

func TestEndpointJSONContract(t *testing.T) {
	dir := t.TempDir()
	sim := cloudtest.Start(t, dir)
	b, err := os.ReadFile(filepath.Join(dir, "endpoint.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	keys := []string{"mqtt_endpoint", "http_endpoint", "root_ca", "claim_cert", "claim_key", "provisioning_template",
		"aws_access_key_id", "aws_secret_access_key", "region", "console_url"}
	for _, k := range keys {
		if m[k] == "" {
			t.Errorf("endpoint.json lacks %q: %s", k, b)
		}
	}
	if len(m) != len(keys) {
		t.Errorf("endpoint.json has %d keys, want exactly the %d of the contract: %s", len(m), len(keys), b)
	}
	for _, f := range []string{"endpoint.json", cloud.CredentialsFile, console.TokenFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600 (it holds a secret)", f, err)
		}
	}
	for _, k := range []string{"root_ca", "claim_cert", "claim_key"} {
		if !filepath.IsAbs(m[k]) {
			t.Errorf("%s = %q, want an absolute path", k, m[k])
		} else if _, err := os.Stat(m[k]); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if m["mqtt_endpoint"] != sim.MQTTAddrs()[0] {
		t.Errorf("mqtt_endpoint = %q, want the listener %q", m["mqtt_endpoint"], sim.MQTTAddrs()[0])
	}
	tok, err := os.ReadFile(filepath.Join(dir, console.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := console.URL(strings.TrimPrefix(m["console_url"][:strings.Index(m["console_url"], "/console")], "http://"), strings.TrimSpace(string(tok))); m["console_url"] != want ||
		!strings.HasPrefix(want, "http://127.0.0.1:") {
		t.Errorf("console_url = %q, want %q: a loopback URL with the token of %s", m["console_url"], want, console.TokenFile)
	}
	if fi, err := os.Stat(m["claim_key"]); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("claim key mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	sim, err := cloud.Start(cloud.Options{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sim.CreateThing("box-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Shadows().Update("box-1", "", []byte(`{"state":{"desired":{"a":1}}}`)); err != nil {
		t.Fatal(err)
	}
	caBefore := sim.CA().CertPEM
	credsBefore := sim.Credentials()
	claim := sim.Endpoint().ClaimCert
	claimBefore, _ := os.ReadFile(claim)
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sim.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	sim = cloudtest.Start(t, dir)
	if _, err := sim.Registry().DescribeThing("box-1"); err != nil {
		t.Errorf("thing after restart: %v", err)
	}
	doc, err := sim.Shadows().Get("box-1", "", nil)
	if err != nil {
		t.Fatalf("shadow after restart: %v", err)
	}
	var d struct{ Version int }
	if json.Unmarshal(doc, &d); d.Version != 1 {
		t.Errorf("shadow version after restart = %d, want 1", d.Version)
	}
	if string(sim.CA().CertPEM) != string(caBefore) {
		t.Error("the CA changed across a restart")
	}
	if sim.Credentials() != credsBefore {
		t.Error("the access key pair changed across a restart")
	}
	if after, _ := os.ReadFile(claim); string(after) != string(claimBefore) {
		t.Error("the claim certificate changed across a restart")
	}
}

func TestSecondSimOnSameDataDirFails(t *testing.T) {
	dir := t.TempDir()
	cloudtest.Start(t, dir)
	if _, err := cloud.Start(cloud.Options{DataDir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}); err == nil {
		t.Fatal("a second iotsim on the same data dir started")
	}
}
