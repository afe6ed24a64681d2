//go:build linux

package main

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/tpm"
	"github.com/iotagent/iotagent/tpm/tpmtest"
)

// The key store check leaves the key open for the TLS and MQTT checks
// after it. It closed a TPM key store when it returned, so with the key in
// a TPM every later handshake failed with "tpm sign: key store closed"
// (a file key kept signing after Close, which hid it); the virtual device
// (make test-vm) found it.
func TestDiagTPMKeyServesLaterChecks(t *testing.T) {
	tpmtest.NeedTools(t, "swtpm")
	sw := tpmtest.Start(t, t.TempDir())
	tc := tpm.TPMConfig{Device: sw.Device(), Handle: uint32(config.DefaultTPMHandle)}
	ks, err := tpm.OpenKeyStore("tpm", "", tc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.(tpm.Generator).Generate(); err != nil {
		t.Fatal(err)
	}
	ks.Close()

	d := &diagRun{cfg: config.Default()}
	d.cfg.Identity.KeyStore, d.cfg.Identity.TPM.Device = "tpm", sw.Device()
	defer d.close()
	d.checkKeyStore()
	if len(d.out) != 1 || d.out[0].Status != pass {
		t.Fatalf("key store check: %+v", d.out)
	}
	digest := sha256.Sum256([]byte("a later check"))
	if _, err := d.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("signing after the key store check (as the TLS check does): %v", err)
	}
}
