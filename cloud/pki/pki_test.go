package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCertificateIDKnownAnswer(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{nil, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	} {
		if got := CertificateID(tc.in); got != tc.want {
			t.Errorf("CertificateID(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestCAReusedAfterReload(t *testing.T) {
	dir := t.TempDir()
	ca1, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ca1.Key.(*ecdsa.PrivateKey); !ok {
		t.Errorf("CA key is %T, want *ecdsa.PrivateKey", ca1.Key)
	}
	if got := ca1.Cert.NotAfter.Sub(ca1.Cert.NotBefore); got < 9*365*24*time.Hour {
		t.Errorf("CA validity %s, want about 10 years", got)
	}
	for name, want := range map[string]os.FileMode{CACertFile: 0o644, CAKeyFile: 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	ca2, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca1.Cert.Raw, ca2.Cert.Raw) || !bytes.Equal(ca1.CertPEM, ca2.CertPEM) {
		t.Error("reloaded CA differs from the created one")
	}
	if !publicKeysEqual(ca1.Key.Public(), ca2.Key.Public()) {
		t.Error("reloaded CA key differs")
	}
	// No temp files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("dir has %d entries, want 2", len(ents))
	}
}

func TestCAIncomplete(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, CACertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir); !errors.Is(err, ErrIncompleteCA) {
		t.Fatalf("LoadOrCreateCA with only ca.key: %v, want ErrIncompleteCA", err)
	}

	// Mismatched pair.
	dir2 := t.TempDir()
	other, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir2, CACertFile), other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir2); !errors.Is(err, ErrIncompleteCA) {
		t.Fatalf("LoadOrCreateCA with mismatched key: %v, want ErrIncompleteCA", err)
	}
}

func TestServerCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	certs, err := ca.ServerCertificates(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 {
		t.Fatalf("got %d certificates, want 2", len(certs))
	}
	var algs []string
	for _, c := range certs {
		algs = append(algs, c.Leaf.PublicKeyAlgorithm.String())
		var ips []string
		for _, ip := range c.Leaf.IPAddresses {
			ips = append(ips, ip.String())
		}
		if diff := cmp.Diff([]string{"127.0.0.1", "::1"}, ips); diff != "" {
			t.Errorf("IP SANs (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"localhost"}, c.Leaf.DNSNames); diff != "" {
			t.Errorf("DNS SANs (-want +got):\n%s", diff)
		}
		for _, host := range hosts {
			if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: ca.Pool()}); err != nil {
				t.Errorf("%s certificate does not verify for %s: %v", c.Leaf.PublicKeyAlgorithm, host, err)
			}
		}
	}
	if diff := cmp.Diff([]string{"ECDSA", "RSA"}, algs); diff != "" {
		t.Errorf("key algorithms (-want +got):\n%s", diff)
	}

	// Reused on the next call.
	again, err := ca.ServerCertificates(dir, []string{"localhost", "::1", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range certs {
		if !bytes.Equal(certs[i].Leaf.Raw, again[i].Leaf.Raw) {
			t.Errorf("certificate %d was regenerated with the same hosts", i)
		}
	}
	// Regenerated when the hosts change.
	changed, err := ca.ServerCertificates(dir, []string{"127.0.0.1", "sim.localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(certs[1].Leaf.Raw, changed[1].Leaf.Raw) {
		t.Error("certificate not regenerated after the hosts changed")
	}
	if diff := cmp.Diff([]string{"sim.localhost"}, changed[1].Leaf.DNSNames); diff != "" {
		t.Errorf("DNS SANs after change (-want +got):\n%s", diff)
	}
	// Regenerated when expiry is near.
	ca.Now = func() time.Time { return time.Now().Add(serverValidity - 10*24*time.Hour) }
	renewed, err := ca.ServerCertificates(dir, []string{"127.0.0.1", "sim.localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(changed[1].Leaf.Raw, renewed[1].Leaf.Raw) {
		t.Error("certificate not regenerated when near expiry")
	}
	// Keys are 0600.
	for _, name := range []string{ServerRSAKeyFile, ServerECKeyFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	if _, err := ca.ServerCertificates(dir, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("no hosts: %v, want ErrInvalid", err)
	}
}

func TestIssueDevice(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Now().Add(48 * time.Hour).Truncate(time.Second).UTC()
	der, err := ca.IssueDevice(key.Public(), pkix.Name{CommonName: "thing-1", SerialNumber: "SN1"}, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("device certificate does not verify against the CA: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("device certificate verifies for server auth")
	}
	if cert.Subject.CommonName != "thing-1" || cert.Subject.SerialNumber != "SN1" || !cert.NotAfter.Equal(notAfter) {
		t.Errorf("subject %v notAfter %v", cert.Subject, cert.NotAfter)
	}
	if _, err := ca.IssueDevice(struct{}{}, pkix.Name{}, notAfter); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("bad key: %v, want ErrUnsupportedKey", err)
	}
	if _, err := ca.IssueDevice(key.Public(), pkix.Name{}, time.Now().Add(-time.Hour)); !errors.Is(err, ErrInvalid) {
		t.Errorf("past notAfter: %v, want ErrInvalid", err)
	}
}

func TestNewKeysAndCertificate(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.NewKeysAndCertificate("")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not form a pair: %v", err)
	}
	if !bytes.Contains(keyPEM, []byte("BEGIN PRIVATE KEY")) {
		t.Error("key is not PKCS#8 PEM")
	}
	leaf := pair.Leaf
	if leaf.Subject.CommonName != "AWS IoT Certificate" {
		t.Errorf("CN %q", leaf.Subject.CommonName)
	}
	if !leaf.NotAfter.Equal(AWSNotAfter) || leaf.NotAfter.Unix() != 2524607999 {
		t.Errorf("notAfter %v, want %v", leaf.NotAfter, AWSNotAfter)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if got := CertificateID(leaf.Raw); len(got) != 64 {
		t.Errorf("id %q", got)
	}
}

func TestWriteFileAtomicReplaces(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	for _, content := range []string{"one", "two"} {
		if err := WriteFileAtomic(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("content %q, want %q", got, content)
		}
	}
	if err := WriteFileAtomic(filepath.Join(t.TempDir(), "missing", "k"), nil, 0o600); err == nil {
		t.Error("write into a missing dir succeeded")
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := ParseCertificatePEM([]byte(in)); !errors.Is(err, ErrBadPEM) {
			t.Errorf("ParseCertificatePEM(%q) = %v, want ErrBadPEM", in, err)
		}
		if _, err := ParseKeyPEM([]byte(in)); !errors.Is(err, ErrBadPEM) {
			t.Errorf("ParseKeyPEM(%q) = %v, want ErrBadPEM", in, err)
		}
	}
}

func FuzzParsePEM(f *testing.F) {
	ca, err := LoadOrCreateCA(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	certPEM, keyPEM, err := ca.NewKeysAndCertificate("x")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(certPEM)
	f.Add(keyPEM)
	f.Add(slices.Concat(keyPEM, certPEM))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseCertificatePEM(b); err == nil && c == nil {
			t.Fatal("nil certificate without error")
		}
		if k, err := ParseKeyPEM(b); err == nil && k == nil {
			t.Fatal("nil key without error")
		}
	})
}

// AWS's CreateKeysAndCertificate hands out RSA 2048 keys as PKCS#1 PEM.
func TestCreateKeysAndCertificateRSA(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.CreateKeysAndCertificate("")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(keyPEM, []byte("-----BEGIN RSA PRIVATE KEY-----\n")) {
		t.Errorf("key PEM starts %.40q, want a PKCS#1 RSA PRIVATE KEY", keyPEM)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not form a pair: %v", err)
	}
	pub, ok := pair.Leaf.PublicKey.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 2048 {
		t.Fatalf("public key %T, want RSA 2048", pair.Leaf.PublicKey)
	}
	if pair.Leaf.Subject.CommonName != "AWS IoT Certificate" || !pair.Leaf.NotAfter.Equal(AWSNotAfter) {
		t.Errorf("CN %q notAfter %v", pair.Leaf.Subject.CommonName, pair.Leaf.NotAfter)
	}
	if pair.Leaf.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		t.Error("an RSA device certificate lacks keyEncipherment")
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify: %v", err)
	}
}
