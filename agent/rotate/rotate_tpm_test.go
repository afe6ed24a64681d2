//go:build cgo

package rotate

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpmutil"

	"github.com/iotagent/iotagent/agent/internal/fleetapi"
	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/tpm"
)

// sharedTPM serialises commands from several stores to one simulator, as
// one swtpm connection shared by the agent's store and the rotation's.
type sharedTPM struct {
	mu  *sync.Mutex
	sim *simulator.Simulator
}

func (s sharedTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tpmutil.RunCommandRaw(s.sim, cmd)
}
func (sharedTPM) Close() error { return nil }

// TestRotateTPM: the device key lives in the TPM at one handle; rotation
// makes the new key at the second handle and switches only at the commit.
func TestRotateTPM(t *testing.T) {
	tsim, err := simulator.Get()
	if err != nil {
		t.Fatalf("start TPM simulator: %v", err)
	}
	defer tsim.Close()
	shared := sharedTPM{mu: new(sync.Mutex), sim: tsim}
	const h0, h1 = 0x81000010, 0x81000011
	cur, err := tpm.NewTPMStore(shared, h0)
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	signer, err := cur.Generate()
	if err != nil {
		t.Fatal(err)
	}

	// The thing and a certificate for the TPM key, as provisioning made them.
	sim := cloudtest.Start(t, "")
	reg := sim.Registry()
	const name = "SN-TPM-1"
	if _, err := reg.CreateThing(name, "", nil); err != nil {
		t.Fatal(err)
	}
	der, err := sim.CA().IssueDevice(signer.Public(), pkix.Name{CommonName: name}, pki.AWSNotAfter)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := reg.RegisterCertificate(pemCert(der), registry.StatusActive)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.AttachThingPrincipal(name, rc.ID); err != nil {
		t.Fatal(err)
	}
	if err := reg.AttachPolicy(provisioning.DevicePolicyName, rc.ARN); err != nil {
		t.Fatal(err)
	}
	c, err := transport.New(transport.Options{
		Broker: sim.MQTTAddrs()[0], ServerName: "localhost", RootCAs: sim.CA().Pool(),
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: signer}, ClientID: name,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
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

	keys := &TPMKeys{Handles: [2]uint32{h0, h1}, Open: func(h uint32) (TPMSlot, error) { return tpm.NewTPMStore(shared, h) }}
	defer keys.Close()
	stateDir := t.TempDir()
	certFile := filepath.Join(stateDir, "device.crt")
	if err := os.WriteFile(certFile, pemCert(der), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := Rotate(ctx, c, keys, Options{
		StateDir: stateDir, Template: "iotsim-fleet", Params: map[string]string{"SerialNumber": name},
		CurrentKeyRef: TPMRef(h0), CurrentCertificateFile: certFile, ResponseTimeout: 2 * time.Second,
		Verify: DialVerifier(DialOptions{Addr: sim.MQTTAddrs()[0], ServerName: "localhost", RootCAs: sim.CA().Pool(), ClientID: name}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rotation with TPM keys took %v", time.Since(start))
	if res.NewKeyRef != TPMRef(h1) || res.OldCertificateID != rc.ID {
		t.Errorf("result %+v", res)
	}
	newKey, err := keys.Signer(res.NewKeyRef)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseCertFile(res.NewCertFile)
	if err != nil || !fleetapi.PublicKeysEqual(got.PublicKey, newKey.Public()) {
		t.Errorf("new certificate is not for the key at 0x%x: %v", h1, err)
	}
	// The old key is still at its handle.
	if old, err := cur.Signer(); err != nil || !fleetapi.PublicKeysEqual(old.Public(), signer.Public()) {
		t.Errorf("old key at 0x%x: %v", h0, err)
	}
	if nc, err := reg.DescribeCertificate(res.NewCertificateID); err != nil || nc.Status != registry.StatusActive {
		t.Errorf("new certificate = %+v, %v", nc, err)
	}
}
