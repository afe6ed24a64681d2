package provision

import (
	"context"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/tpm"
)

// TestCreateKeysAndCertificateRSA: CreateKeysAndCertificate hands out an
// RSA 2048 key in a PKCS#1 PEM, as AWS does; the agent stores it, the file
// key store reads it, and the device connects with it over mutual TLS.
func TestCreateKeysAndCertificateRSA(t *testing.T) {
	sim := cloudtest.Start(t, "")
	dir := t.TempDir()
	ks := tpm.NewFileStore(filepath.Join(dir, "keys", "device.key"))
	id, err := Provision(context.Background(), mqttClient(t, sim, "provision-rsa", nil), ks, fastOptions(dir, false, "rsa-1"))
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	keyPEM, err := os.ReadFile(id.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(keyPEM), "-----BEGIN RSA PRIVATE KEY-----\n") {
		t.Fatalf("key file %s starts %.40q, want AWS's PKCS#1 RSA key", id.KeyFile, keyPEM)
	}
	signer, err := tpm.NewFileStore(id.KeyFile).Signer()
	if err != nil {
		t.Fatalf("file key store: %v", err)
	}
	pub, ok := signer.Public().(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 2048 {
		t.Fatalf("key is %T, want RSA 2048", signer.Public())
	}
	cert, err := id.Certificate(signer)
	if err != nil {
		t.Fatal(err)
	}
	cert.PrivateKey = signer // as the agent runs: the key store's signer, not the parsed PEM
	mqttClient(t, sim, id.ThingName, &cert)
	checkOneIdentity(t, sim, id, ks)
}
