package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// provisionConfig writes a config for the sim's claim certificate.
func provisionConfig(t *testing.T, extra string) (path string, dir string) {
	t.Helper()
	sim := cloudtest.Start(t, "")
	ep := sim.Endpoint()
	host, port, _ := net.SplitHostPort(ep.MQTTEndpoint)
	dir = t.TempDir()
	path = filepath.Join(dir, "config.json")
	cfg := `{"state_dir":"` + dir + `/state","mqtt":{"endpoint":"` + host + `","port":` + port + `,"root_ca":"` + ep.RootCA + `"},
	 "localapi":{"enabled":false},
	 "provisioning":{"claim_cert":"` + ep.ClaimCert + `","claim_key":"` + ep.ClaimKey + `","template":"` + ep.ProvisioningTemplate + `"` + extra + `}}`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func TestProvisionCommand(t *testing.T) {
	cfg, _ := provisionConfig(t, "")
	var out, errOut bytes.Buffer
	if err := run([]string{"provision", "--config", cfg, "--param", "SerialNumber=LINE-0001", "--csr"}, &out, &errOut); err != nil {
		t.Fatalf("provision: %v\n%s", err, errOut.String())
	}
	var res provisionResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("provision printed %q: %v", out.String(), err)
	}
	if res.ThingName != "LINE-0001" || len(res.CertificateID) != 64 || res.AlreadyDone {
		t.Errorf("result = %+v", res)
	}
	out.Reset()
	if err := run([]string{"provision", "--config", cfg, "--param", "SerialNumber=LINE-0001"}, &out, &errOut); err != nil {
		t.Fatalf("second provision: %v", err)
	}
	var again provisionResult
	if err := json.Unmarshal(out.Bytes(), &again); err != nil || !again.AlreadyDone || again.CertificateID != res.CertificateID {
		t.Errorf("second run = %s (err %v), want the same identity, already provisioned", out.String(), err)
	}
}

func TestProvisionRefusedIsExit5(t *testing.T) {
	cfg, _ := provisionConfig(t, "")
	var out, errOut bytes.Buffer
	err := run([]string{"provision", "--config", cfg, "--param", "SerialNumber=not a thing name"}, &out, &errOut)
	if got := exitCode(err); got != exitRefused {
		t.Fatalf("exit code %d (err %v), want %d", got, err, exitRefused)
	}
}

func TestDefenderDryRun(t *testing.T) {
	for _, format := range []string{"json", "cbor"} {
		t.Run(format, func(t *testing.T) {
			cfg, _ := provisionConfig(t, "")
			b, _ := os.ReadFile(cfg)
			s := strings.Replace(string(b), `"localapi"`, `"thing_name":"box-1","defender":{"enabled":true,"format":"`+format+`"},"localapi"`, 1)
			os.WriteFile(cfg, []byte(s), 0o600)
			var out, errOut bytes.Buffer
			if err := run([]string{"defender", "report", "--dry-run", "--config", cfg}, &out, &errOut); err != nil {
				t.Fatalf("dry run: %v\n%s", err, errOut.String())
			}
			var rep map[string]any
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("dry run printed %q: %v", out.String(), err)
			}
			if _, ok := rep["header"]; !ok {
				t.Errorf("report has no header: %s", out.String())
			}
		})
	}
}
