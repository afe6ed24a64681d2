package ota

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDocumentRoundTrip(t *testing.T) {
	_, sec := keyPair()
	data := fakeBinary(elf.EM_AARCH64, "1.4.0", 100)
	r := Release{Version: "1.4.0", URL: "https://h.example/a?x=1&y=<2>", Size: int64(len(data)), SHA256: sha256Hex(data),
		Signature: sign(t, sec, data, "1.4.0"), Arch: "arm64", AllowDowngrade: true}
	doc, err := r.Document()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, []byte(`"url": "https://h.example/a?x=1&y=<2>"`)) {
		t.Errorf("the URL is escaped: %s", doc)
	}
	got, err := ParseDocument(doc, []string{"h.example"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("Document -> ParseDocument (-want +got):\n%s", diff)
	}
	r.AllowDowngrade = false
	if doc, _ := r.Document(); bytes.Contains(doc, []byte("allow_downgrade")) {
		t.Errorf("allow_downgrade written when false: %s", doc)
	}
}

func TestELFArchAndVerifyRelease(t *testing.T) {
	pub, sec := keyPair()
	other, _, err := GenerateKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for arch, m := range elfMachine {
		p := filepath.Join(dir, arch)
		data := fakeBinary(elf.Machine(m), "1.0.0", 64)
		os.WriteFile(p, data, 0o755)
		if got, err := ELFArch(p); err != nil || got != arch {
			t.Errorf("ELFArch(%s) = %q, %v", arch, got, err)
		}
		r := Release{Version: "1.0.0", Size: int64(len(data)), SHA256: sha256Hex(data), Signature: signFor(t, sec, data, Meta{"1.0.0", arch}), Arch: arch}
		if err := VerifyRelease(p, r, []string{string(pub)}); err != nil {
			t.Errorf("VerifyRelease(%s): %v", arch, err)
		}
		if err := VerifyRelease(p, r, []string{string(other)}); !errors.Is(err, ErrUntrustedKey) {
			t.Errorf("VerifyRelease(%s) with another key: %v", arch, err)
		}
		wrong := r
		wrong.Arch = "riscv64"
		if arch == "riscv64" {
			wrong.Arch = "amd64"
		}
		if err := VerifyRelease(p, wrong, []string{string(pub)}); !errors.Is(err, ErrSignedMismatch) {
			t.Errorf("VerifyRelease(%s, the document saying %s): %v", arch, wrong.Arch, err)
		}
		wrong.Signature = signFor(t, sec, data, Meta{"1.0.0", wrong.Arch})
		if err := VerifyRelease(p, wrong, []string{string(pub)}); !errors.Is(err, ErrWrongArch) {
			t.Errorf("VerifyRelease(%s signed as %s): %v", arch, wrong.Arch, err)
		}
	}
	p := filepath.Join(dir, "mips")
	os.WriteFile(p, fakeBinary(elf.EM_MIPS, "1.0.0", 8), 0o755)
	if _, err := ELFArch(p); err == nil || !strings.Contains(err.Error(), "machine 8 is not one iotagent runs on") {
		t.Errorf("ELFArch(mips) = %v", err)
	}
	os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
	if _, err := ELFArch(p); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("ELFArch(script) = %v", err)
	}
}

func TestLoadSecretKey(t *testing.T) {
	pub, sec := keyPair()
	k, err := LoadSecretKey(sec, "")
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := ParsePublicKey(string(pub))
	if k.PublicKey() != pk.String() || !strings.Contains(string(pub), k.KeyID()) {
		t.Errorf("public key %s (ID %s), want %s", k.PublicKey(), k.KeyID(), pub)
	}
	id, err := KeyID(string(pub))
	if err != nil || id != k.KeyID() {
		t.Errorf("KeyID = %q, %v; want %s", id, err, k.KeyID())
	}
	// SecretKey.Sign and Sign make the same signature (Ed25519 is deterministic).
	now := time.Unix(1700000000, 0)
	a, err1 := k.Sign(strings.NewReader("data"), "f", now, Meta{"1.0.0", "arm64"})
	b, err2 := Sign(sec, "", strings.NewReader("data"), "f", now, Meta{"1.0.0", "arm64"})
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		t.Errorf("SecretKey.Sign != Sign: %v %v\n%s\n%s", err1, err2, a, b)
	}
	// An encrypted key without a password: refused before any scrypt.
	lines := strings.Split(strings.TrimSpace(string(sec)), "\n")
	raw := []byte(lines[1])
	// "RWQAAEIy" is "Ed", kdf 0 0, "B2" in base64; "RWRTY0Iy" is "Ed" "Sc"
	// "B2", the encrypted form.
	if !bytes.HasPrefix(raw, []byte("RWQAAEIy")) {
		t.Fatalf("unexpected key encoding %s", raw[:8])
	}
	encrypted := lines[0] + "\n" + "RWRTY0Iy" + string(raw[8:]) + "\n"
	if _, err := LoadSecretKey([]byte(encrypted), ""); !errors.Is(err, ErrKeyEncrypted) {
		t.Errorf("encrypted key, no password: %v", err)
	}
	for _, bad := range []string{"", "untrusted comment: x\n", "RWQ=", string(pub)} {
		if _, err := LoadSecretKey([]byte(bad), ""); err == nil {
			t.Errorf("LoadSecretKey(%q) succeeded", bad)
		}
	}
}

func FuzzLoadSecretKey(f *testing.F) {
	_, sec := keyPair()
	f.Add(sec)
	f.Add([]byte("untrusted comment: minisign secret key\nRWQAAEIy\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := LoadSecretKey(b, "") // never scrypt: no password
		if err != nil {
			return
		}
		if _, err := ParsePublicKey(k.PublicKey()); err != nil {
			t.Errorf("loaded key's public key does not parse: %v", err)
		}
	})
}
