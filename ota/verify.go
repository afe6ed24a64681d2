package ota

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"aead.dev/minisign"
)

// Verification failures. All are fatal: the update fails and no slot is
// touched.
var (
	ErrSizeMismatch = errors.New("ota: size mismatch")
	ErrChecksum     = errors.New("ota: sha256 mismatch")
	ErrBadSignature = errors.New("ota: bad signature")
	ErrUntrustedKey = errors.New("ota: signed by a key that is not trusted")
	ErrWrongArch    = errors.New("ota: built for another CPU")
	ErrNoKeys       = errors.New("ota: no trusted keys configured")
)

// ParsePublicKey parses a minisign public key: the base64 line ("RW…") or
// the whole .pub file with its comment line.
func ParsePublicKey(text string) (minisign.PublicKey, error) {
	var k minisign.PublicKey
	t := strings.TrimSpace(text)
	if i := strings.LastIndexByte(t, '\n'); i >= 0 && strings.HasPrefix(t, "untrusted comment:") {
		t = strings.TrimSpace(t[i+1:])
	}
	if err := k.UnmarshalText([]byte(t)); err != nil {
		return k, fmt.Errorf("parse minisign public key: %w", err)
	}
	return k, nil
}

// parseSignature parses a .minisig file. Only prehashed signatures (the
// minisign tool's default since 0.8, algorithm "ED") are accepted, so that
// verification streams.
func parseSignature(text string) (minisign.Signature, error) {
	var s minisign.Signature
	if len(text) > 4096 {
		return s, errors.New("longer than 4096 bytes")
	}
	if err := s.UnmarshalText([]byte(strings.TrimSpace(text) + "\n")); err != nil {
		return s, fmt.Errorf("not a minisign signature: %v", err)
	}
	if s.Algorithm != minisign.HashEdDSA {
		return s, errors.New("legacy (non-prehashed) minisign signature; sign with minisign 0.8 or later or iotagent ota sign")
	}
	return s, nil
}

// verifyFile checks the file at path against r: size, SHA-256, minisign
// signature by one of keys, and the ELF header against the device's CPU.
// It reads the file once, in constant memory.
func verifyFile(path string, r Release, keys []minisign.PublicKey) error {
	if len(keys) == 0 {
		return ErrNoKeys
	}
	sig, err := parseSignature(r.Signature)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	mr := minisign.NewReader(f)
	n, err := io.Copy(h, mr)
	if err != nil {
		return fmt.Errorf("verify: read: %w", err)
	}
	if n != r.Size {
		return fmt.Errorf("%w: got %d bytes, the job says %d", ErrSizeMismatch, n, r.Size)
	}
	want, _ := hex.DecodeString(r.SHA256)
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("%w: got %x, the job says %s", ErrChecksum, got, r.SHA256)
	}
	trusted := false
	for _, k := range keys {
		if k.ID() != sig.KeyID {
			continue
		}
		trusted = true
		if mr.Verify(k, []byte(r.Signature)) {
			return checkELF(path, DeviceArch)
		}
	}
	if !trusted {
		return fmt.Errorf("%w: key ID %016X", ErrUntrustedKey, sig.KeyID)
	}
	return fmt.Errorf("%w: minisign verification failed", ErrBadSignature)
}

var elfMachine = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"arm":     elf.EM_ARM,
	"386":     elf.EM_386,
	"riscv64": elf.EM_RISCV,
}

// checkELF reports ErrWrongArch unless path is an ELF executable for
// arch (a GOARCH).
func checkELF(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%w: not an ELF executable: %v", ErrWrongArch, err)
	}
	defer f.Close()
	want, ok := elfMachine[arch]
	if !ok {
		return fmt.Errorf("%w: device arch %q unknown", ErrWrongArch, arch)
	}
	if f.Machine != want {
		return fmt.Errorf("%w: ELF machine %v, this device is %s (%v)", ErrWrongArch, f.Machine, arch, want)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%w: ELF type %v is not an executable", ErrWrongArch, f.Type)
	}
	return nil
}

// CheckBinary reports ErrWrongArch unless path is an ELF executable for
// this device's CPU.
func CheckBinary(path string) error { return checkELF(path, DeviceArch) }
