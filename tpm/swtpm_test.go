//go:build linux

package tpm

// Tests against swtpm (a real software TPM in its own process, through the
// tcp transport the agent uses in development) and tpm2-tools. Debian
// packages: swtpm, swtpm-tools, tpm2-tools. They skip when those are
// missing, unless CI=true, where they fail.

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/tpm/tpmtest"
)

// tpm2Tool runs a tpm2-tools command against p.
func tpm2Tool(t *testing.T, p *tpmtest.Swtpm, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=%d", p.Port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestSwtpm(t *testing.T) {
	tpmtest.NeedTools(t, "swtpm", "tpm2_readpublic")
	dir := t.TempDir()
	sw := tpmtest.Start(t, dir)

	s, err := OpenTPM(TPMConfig{Device: sw.Device()})
	if err != nil {
		t.Fatalf("OpenTPM: %v", err)
	}
	k, err := s.Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	pub := k.Public().(*ecdsa.PublicKey)
	checkSignVerify(t, k)
	checkCSR(t, k)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) { checkMutualTLS(t, k, v) })
	}
	// swtpm serves one client at a time: let tpm2-tools in.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// tpm2-tools sees the key at its handle, with the attributes the agent
	// gave it, and the same public key.
	pemPath := filepath.Join(t.TempDir(), "key.pem")
	out := tpm2Tool(t, sw, "tpm2_readpublic", "-c", "0x81000010", "-f", "pem", "-o", pemPath)
	for _, want := range []string{"fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign", "NIST p256", "ecdsa"} {
		if !strings.Contains(strings.ToLower(out), strings.ToLower(want)) {
			t.Errorf("tpm2_readpublic output lacks %q:\n%s", want, out)
		}
	}
	data, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("tpm2_readpublic wrote no PEM:\n%s", data)
	}
	toolPub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(toolPub) {
		t.Fatal("tpm2_readpublic's public key is not the signer's")
	}
	if out := tpm2Tool(t, sw, "tpm2_getcap", "handles-transient"); strings.Contains(out, "0x80") {
		t.Errorf("transient objects left behind:\n%s", out)
	}

	// Restart swtpm on the same state: the key is still there.
	sw.Stop(t)
	sw2 := tpmtest.Start(t, dir)
	s2, err := OpenTPM(TPMConfig{Device: sw2.Device()})
	if err != nil {
		t.Fatalf("OpenTPM after restart: %v", err)
	}
	defer s2.Close()
	k2, err := s2.Signer()
	if err != nil {
		t.Fatalf("Signer after restart: %v", err)
	}
	if !pub.Equal(k2.Public()) {
		t.Fatal("the key after the restart is not the key generated")
	}
	checkSignVerify(t, k2)
}

// TestSwtpmStaleTransients leaves transient objects behind with tpm2-tools,
// as a crashed client would, and checks that OpenTPM clears them.
func TestSwtpmStaleTransients(t *testing.T) {
	tpmtest.NeedTools(t, "swtpm", "tpm2_createprimary")
	sw := tpmtest.Start(t, t.TempDir())
	ctx := filepath.Join(t.TempDir(), "primary.ctx")
	for range 3 {
		tpm2Tool(t, sw, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", ctx)
	}
	if out := tpm2Tool(t, sw, "tpm2_getcap", "handles-transient"); strings.Count(out, "0x80") != 3 {
		t.Fatalf("want 3 stale transient objects, tpm2_getcap handles-transient says:\n%s", out)
	}
	s, err := OpenTPM(TPMConfig{Device: sw.Device(), Handle: 0x81000011})
	if err != nil {
		t.Fatalf("OpenTPM: %v", err)
	}
	defer s.Close()
	if _, err := s.Generate(); err != nil {
		t.Fatalf("Generate with stale transients: %v", err)
	}
}
