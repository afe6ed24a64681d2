package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent/provision"
	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
)

// A claim minted while iotsim runs provisions a device end to end.
func TestClaimCreateProvisions(t *testing.T) {
	dataDir := t.TempDir()
	sim := cloudtest.Start(t, dataDir)
	certDir := filepath.Join(t.TempDir(), "line")
	out, err := iotsim(t, "claim", "create", "line-1", "--cert-out", certDir, "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("claim create: %v\n%s", err, out)
	}
	checkCredentials(t, certDir, "line-1")
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "line-1.crt"), filepath.Join(certDir, "line-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := transport.New(transport.Options{
		Broker: sim.MQTTAddrs()[0], ServerName: "localhost", RootCAs: sim.CA().Pool(),
		Certificate: cert, ClientID: "provision-SN-LINE-1", CleanSession: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := provision.Provision(ctx, c, nil, provision.Options{
		Template: cloud.ProvisioningTemplate, Params: map[string]string{"SerialNumber": "SN-LINE-1"},
		StateDir: t.TempDir(), ResponseTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("provision with the minted claim: %v", err)
	}
	if id.ThingName != "SN-LINE-1" {
		t.Errorf("thing %s", id.ThingName)
	}
}

// Offline, for another template: its own claim policy, attached.
func TestClaimCreateOffline(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "sim")
	sim := cloudtest.Start(t, dataDir)
	if _, err := sim.Registry().CreateProvisioningTemplate(registry.ProvisioningTemplate{Name: "factory-b", Enabled: true,
		Body: provisioning.DefaultTemplateBody(true), RoleARN: "arn:aws:iam::123456789012:role/p"}); err != nil {
		t.Fatal(err)
	}
	sim.Close()
	certDir := filepath.Join(t.TempDir(), "line")
	out, err := iotsim(t, "claim", "create", "line-2", "--template", "factory-b", "--cert-out", certDir, "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("claim create: %v\n%s", err, out)
	}
	if !strings.Contains(out, "iotsim-claim-factory-b") {
		t.Errorf("output %q does not name the policy", out)
	}
	sim = cloudtest.Start(t, dataDir)
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "line-2.crt"), filepath.Join(certDir, "line-2.key"))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sim.Registry().DescribeCertificate(pki.CertificateID(cert.Certificate[0]))
	if err != nil || rc.Status != "ACTIVE" {
		t.Fatalf("claim certificate = %+v, %v", rc, err)
	}
	pols, err := sim.Registry().AttachedPolicies(rc.ARN)
	if err != nil || len(pols) != 1 || pols[0].Name != "iotsim-claim-factory-b" || pols[0].Document != provisioning.ClaimPolicyDocument("factory-b") {
		t.Errorf("policies = %+v, %v", pols, err)
	}
}

func TestClaimCreateUsage(t *testing.T) {
	dataDir := t.TempDir()
	for _, args := range [][]string{
		{"claim"}, {"claim", "mint"}, {"claim", "create", "--cert-out", "x"}, {"claim", "create", "a"},
		{"claim", "create", "a/b", "--cert-out", "x"}, {"claim", "create", "a", "--cert-out", "x", "--template", "bad name"},
	} {
		if out, err := iotsim(t, append(args, "--data-dir", dataDir)...); err == nil {
			t.Errorf("iotsim %q succeeded: %s", args, out)
		}
	}
}

// TestClaimCreateRefusals: an unknown template and files that exist are
// refused before anything is minted, offline and while iotsim runs;
// --force overwrites; a second claim in the same directory shares its
// root-ca.pem.
func TestClaimCreateRefusals(t *testing.T) {
	for _, mode := range []string{"offline", "running"} {
		t.Run(mode, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "sim")
			sim := cloudtest.Start(t, dataDir)
			if mode == "offline" {
				sim.Close()
			}
			certs := func() int {
				t.Helper()
				s := sim
				if mode == "offline" {
					s = cloudtest.Start(t, dataDir)
					defer s.Close()
				}
				list, err := s.Registry().ListCertificates()
				if err != nil {
					t.Fatal(err)
				}
				return len(list)
			}
			before := certs()
			dir := filepath.Join(t.TempDir(), "line")
			claim := func(args ...string) (string, error) {
				return iotsim(t, append([]string{"claim", "create", "--cert-out", dir, "--data-dir", dataDir}, args...)...)
			}
			if out, err := claim("line-1", "--template", "no-such-template"); err == nil || !strings.Contains(err.Error(), `--template "no-such-template": no such provisioning template`) {
				t.Errorf("unknown template: %v\n%s", err, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "line-1.crt")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused claim wrote files: %v", err)
			}
			if out, err := claim("line-1"); err != nil {
				t.Fatalf("claim create line-1: %v\n%s", err, out)
			}
			first, _ := os.ReadFile(filepath.Join(dir, "line-1.key"))
			if out, err := claim("line-1"); err == nil || !strings.Contains(err.Error(), "line-1.crt: exists; not overwriting a claim") {
				t.Errorf("second claim create line-1: %v\n%s", err, out)
			}
			if again, _ := os.ReadFile(filepath.Join(dir, "line-1.key")); !bytes.Equal(again, first) {
				t.Error("the refused claim create overwrote line-1.key")
			}
			if out, err := claim("line-2"); err != nil {
				t.Errorf("a second claim in the same directory: %v\n%s", err, out)
			}
			os.WriteFile(filepath.Join(dir, "root-ca.pem"), []byte("another CA\n"), 0o644)
			if out, err := claim("line-3"); err == nil || !strings.Contains(err.Error(), "root-ca.pem: exists with another CA") {
				t.Errorf("root-ca.pem of another CA: %v\n%s", err, out)
			}
			if out, err := claim("line-1", "--force"); err != nil {
				t.Fatalf("claim create line-1 --force: %v\n%s", err, out)
			}
			if again, _ := os.ReadFile(filepath.Join(dir, "line-1.key")); bytes.Equal(again, first) {
				t.Error("--force did not write a new line-1.key")
			}
			// Minted: line-1, line-2, line-1 again; nothing for the refusals.
			if got := certs() - before; got != 3 {
				t.Errorf("%d certificates minted, want 3", got)
			}
		})
	}
}
