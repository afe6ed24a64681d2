package main

import (
	"context"
	"crypto/tls"
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
	cloudtest.Start(t, dataDir).Close()
	certDir := filepath.Join(t.TempDir(), "line")
	out, err := iotsim(t, "claim", "create", "line-2", "--template", "factory-b", "--cert-out", certDir, "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("claim create: %v\n%s", err, out)
	}
	if !strings.Contains(out, "iotsim-claim-factory-b") {
		t.Errorf("output %q does not name the policy", out)
	}
	sim := cloudtest.Start(t, dataDir)
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
