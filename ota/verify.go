package ota

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
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

// ELF machine numbers (e_machine) of the architectures iotagent runs on.
var elfMachine = map[string]uint16{
	"amd64":   62,  // EM_X86_64
	"arm64":   183, // EM_AARCH64
	"arm":     40,  // EM_ARM
	"386":     3,   // EM_386
	"riscv64": 243, // EM_RISCV
}

var elfMachineName = map[uint16]string{62: "EM_X86_64", 183: "EM_AARCH64", 40: "EM_ARM", 3: "EM_386", 243: "EM_RISCV"}

func machineName(m uint16) string {
	if n, ok := elfMachineName[m]; ok {
		return n
	}
	return fmt.Sprintf("machine %d", m)
}

// ELF object types that can be run (e_type).
const (
	elfExec = 2 // ET_EXEC
	elfDyn  = 3 // ET_DYN
)

// readELFHeader reads an ELF file's type and machine from the first 20
// bytes of its header: all that the arch check needs (debug/elf would
// add about 100 KiB to the agent).
func readELFHeader(path string) (typ, machine uint16, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var h [20]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0, 0, fmt.Errorf("read ELF header: %w", err)
	}
	if string(h[:4]) != "\x7fELF" {
		return 0, 0, errors.New("bad magic number")
	}
	if h[4] != 1 && h[4] != 2 {
		return 0, 0, fmt.Errorf("unknown ELF class %d", h[4])
	}
	var bo binary.ByteOrder
	switch h[5] {
	case 1:
		bo = binary.LittleEndian
	case 2:
		bo = binary.BigEndian
	default:
		return 0, 0, fmt.Errorf("unknown ELF data encoding %d", h[5])
	}
	if h[6] != 1 {
		return 0, 0, fmt.Errorf("unknown ELF version %d", h[6])
	}
	return bo.Uint16(h[16:]), bo.Uint16(h[18:]), nil
}

// checkELF reports ErrWrongArch unless path is an ELF executable for
// arch (a GOARCH).
func checkELF(path, arch string) error {
	typ, machine, err := readELFHeader(path)
	if err != nil {
		return fmt.Errorf("%w: not an ELF executable: %v", ErrWrongArch, err)
	}
	want, ok := elfMachine[arch]
	if !ok {
		return fmt.Errorf("%w: device arch %q unknown", ErrWrongArch, arch)
	}
	if machine != want {
		return fmt.Errorf("%w: ELF machine %s, this device is %s (%s)", ErrWrongArch, machineName(machine), arch, machineName(want))
	}
	if typ != elfExec && typ != elfDyn {
		return fmt.Errorf("%w: ELF type %d is not an executable", ErrWrongArch, typ)
	}
	return nil
}

// CheckBinary reports ErrWrongArch unless path is an ELF executable for
// this device's CPU.
func CheckBinary(path string) error { return checkELF(path, DeviceArch) }
