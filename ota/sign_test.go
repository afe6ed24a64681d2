package ota

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"aead.dev/minisign"
)

func minisignCLI(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("minisign")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("minisign is not installed (apt-get install minisign)")
		}
		t.Skip("minisign is not installed (apt-get install minisign); skipping the interoperability test")
	}
	return p
}

func TestSignVerifyRoundTrip(t *testing.T) {
	pub, sec := keyPair()
	data := []byte("artifact")
	sig, err := Sign(sec, "", bytes.NewReader(data), "a", time.Now(), Meta{"1.0.0", "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(string(pub))
	if err != nil {
		t.Fatal(err)
	}
	r := minisign.NewReader(bytes.NewReader(data))
	if _, err := r.Read(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if !r.Verify(pk, sig) {
		t.Error("own signature does not verify")
	}
	if _, err := Sign([]byte("untrusted comment: x\nAAAA\n"), "", bytes.NewReader(data), "a", time.Now(), Meta{"1.0.0", "arm64"}); err == nil {
		t.Error("garbage key accepted")
	}
}

// Keys and signatures interoperate with the minisign tool both ways.
func TestMinisignInterop(t *testing.T) {
	bin := minisignCLI(t)
	dir := t.TempDir()
	art := filepath.Join(dir, "iotagent")
	data := fakeBinary(deviceMachine(), "2.0.0", 1000)
	if err := os.WriteFile(art, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Stdin = bytes.NewReader(nil)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("minisign %v: %v\n%s", args, err, out)
		}
	}
	// Our key and signature, checked by minisign -V.
	pub, sec, err := GenerateKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := Sign(sec, "", bytes.NewReader(data), "iotagent", time.Now(), Meta{"2.0.0", DeviceArch})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "our.pub"), pub, 0o644)
	os.WriteFile(filepath.Join(dir, "our.key"), sec, 0o600)
	os.WriteFile(art+".minisig", sig, 0o644)
	run("-V", "-p", filepath.Join(dir, "our.pub"), "-m", art)
	// minisign -S with our (unencrypted) secret key.
	os.Remove(art + ".minisig")
	run("-S", "-s", filepath.Join(dir, "our.key"), "-m", art)
	cliSig, _ := os.ReadFile(art + ".minisig")
	sum := sha256Hex(data)
	rel := Release{Version: "2.0.0", Size: int64(len(data)), SHA256: sum, Signature: string(cliSig), Arch: DeviceArch}
	pk, _ := ParsePublicKey(string(pub))
	if err := verifyFile(art, rel, []minisign.PublicKey{pk}); err != nil {
		t.Errorf("minisign's signature with our key: %v", err)
	}
	// A key made by minisign -G -W, used by Sign and verifyFile.
	run("-G", "-W", "-p", filepath.Join(dir, "cli.pub"), "-s", filepath.Join(dir, "cli.key"))
	cliSec, _ := os.ReadFile(filepath.Join(dir, "cli.key"))
	cliPub, _ := os.ReadFile(filepath.Join(dir, "cli.pub"))
	sig2, err := Sign(cliSec, "", bytes.NewReader(data), "iotagent", time.Now(), Meta{"2.0.0", DeviceArch})
	if err != nil {
		t.Fatalf("Sign with minisign's key: %v", err)
	}
	pk2, err := ParsePublicKey(string(cliPub))
	if err != nil {
		t.Fatal(err)
	}
	rel.Signature = string(sig2)
	if err := verifyFile(art, rel, []minisign.PublicKey{pk2}); err != nil {
		t.Errorf("our signature with minisign's key: %v", err)
	}
	os.WriteFile(art+".minisig", sig2, 0o644)
	run("-V", "-p", filepath.Join(dir, "cli.pub"), "-m", art)

	// minisign -S -t "version:V arch:A": the metadata devices take from
	// the trusted comment; a plain minisign -S signature is refused before
	// the download.
	u, err := New(Options{StateDir: dir, Version: "1.0.0", TrustedKeys: []string{string(cliPub)}})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(art + ".minisig")
	run("-S", "-s", filepath.Join(dir, "cli.key"), "-m", art, "-t", "version:2.0.0 arch:"+DeviceArch)
	cliSig, _ = os.ReadFile(art + ".minisig")
	rel.Signature = string(cliSig)
	if m, err := signedMeta(rel, u.keys); err != nil || m != (Meta{"2.0.0", DeviceArch}) {
		t.Errorf("minisign -t metadata: %+v, %v", m, err)
	}
	if err := verifyFile(art, rel, u.keys); err != nil {
		t.Errorf("minisign -t signature: %v", err)
	}
	os.Remove(art + ".minisig")
	run("-S", "-s", filepath.Join(dir, "cli.key"), "-m", art)
	cliSig, _ = os.ReadFile(art + ".minisig")
	rel.Signature = string(cliSig)
	if _, err := signedMeta(rel, u.keys); !errors.Is(err, ErrUnsignedMeta) {
		t.Errorf("minisign -S without -t: %v, want ErrUnsignedMeta", err)
	}
}

// The signer of an encrypted key (a minisign.PrivateKey, decrypted) writes
// the same metadata, and minisign's own verification accepts it.
func TestEncryptedSignerMeta(t *testing.T) {
	pk, sk, err := minisign.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("artifact")
	sig, err := signWith(encryptedSigner(sk), bytes.NewReader(data), "a", time.Unix(1700000000, 0), Meta{"1.2.3", "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	r := minisign.NewReader(bytes.NewReader(data))
	if _, err := io.ReadAll(r); err != nil {
		t.Fatal(err)
	}
	if !r.Verify(pk, sig) {
		t.Fatal("minisign does not verify the signature")
	}
	m, err := signedMeta(Release{Signature: string(sig)}, []minisign.PublicKey{pk})
	if err != nil || m != (Meta{"1.2.3", "arm64"}) {
		t.Errorf("signedMeta = %+v, %v", m, err)
	}
}
