package rotate

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/iotagent/iotagent/tpm"
)

// FileKeys keeps rotated keys as PEM files (0600) in Dir, alternating
// between device-a.key and device-b.key. References are "file:" + path.
type FileKeys struct{ Dir string }

// FileRef is the reference of the key file at path.
func FileRef(path string) string { return "file:" + path }

// Next implements KeyStore.
func (k FileKeys) Next(current string) string {
	a, b := filepath.Join(k.Dir, "device-a.key"), filepath.Join(k.Dir, "device-b.key")
	if current == FileRef(a) {
		return FileRef(b)
	}
	return FileRef(a)
}

func filePath(ref string) (string, error) {
	p, ok := strings.CutPrefix(ref, "file:")
	if !ok || p == "" {
		return "", fmt.Errorf("key reference %q: want file:PATH", ref)
	}
	return p, nil
}

// Create implements KeyStore.
func (k FileKeys) Create(ref string) (crypto.Signer, error) {
	p, err := filePath(ref)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove the unused key %s: %w", p, err)
	}
	return tpm.NewFileStore(p).Generate()
}

// Signer implements KeyStore.
func (k FileKeys) Signer(ref string) (crypto.Signer, error) {
	p, err := filePath(ref)
	if err != nil {
		return nil, err
	}
	return tpm.NewFileStore(p).Signer()
}

// TPMSlot is a TPM key store at one persistent handle: *tpm.TPMStore.
type TPMSlot interface {
	Signer() (crypto.Signer, error)
	Replace() (crypto.Signer, error)
	Close() error
}

// TPMKeys keeps rotated keys in the TPM at two persistent handles that
// alternate; references are "tpm:0x%08x". Open opens the store at a
// handle (tpm.OpenTPM with the agent's device; on /dev/tpmrm0 several
// stores may be open at once, swtpm serves one connection at a time, so
// share a transport there). Stores stay open until Close, since signers
// handed out use them.
type TPMKeys struct {
	Handles [2]uint32
	Open    func(handle uint32) (TPMSlot, error)

	mu    sync.Mutex
	slots map[uint32]TPMSlot
}

// TPMRef is the reference of the key at a persistent handle.
func TPMRef(handle uint32) string { return fmt.Sprintf("tpm:0x%08x", handle) }

// Next implements KeyStore.
func (k *TPMKeys) Next(current string) string {
	if current == TPMRef(k.Handles[0]) {
		return TPMRef(k.Handles[1])
	}
	return TPMRef(k.Handles[0])
}

// ParseTPMRef returns the handle of a "tpm:0x…" reference.
func ParseTPMRef(ref string) (uint32, error) {
	s, ok := strings.CutPrefix(ref, "tpm:")
	if !ok {
		return 0, fmt.Errorf("key reference %q: want tpm:0xHANDLE", ref)
	}
	h, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("key reference %q: %w", ref, err)
	}
	return uint32(h), nil
}

func (k *TPMKeys) slot(ref string) (TPMSlot, error) {
	h, err := ParseTPMRef(ref)
	if err != nil {
		return nil, err
	}
	if h != k.Handles[0] && h != k.Handles[1] {
		return nil, fmt.Errorf("key reference %q: not one of the rotation handles", ref)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.slots[h]; ok {
		return s, nil
	}
	s, err := k.Open(h)
	if err != nil {
		return nil, err
	}
	if k.slots == nil {
		k.slots = map[uint32]TPMSlot{}
	}
	k.slots[h] = s
	return s, nil
}

// Create implements KeyStore: a new key at ref's handle, replacing any.
func (k *TPMKeys) Create(ref string) (crypto.Signer, error) {
	s, err := k.slot(ref)
	if err != nil {
		return nil, err
	}
	return s.Replace()
}

// Signer implements KeyStore.
func (k *TPMKeys) Signer(ref string) (crypto.Signer, error) {
	s, err := k.slot(ref)
	if err != nil {
		return nil, err
	}
	return s.Signer()
}

// Close closes every store opened.
func (k *TPMKeys) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for h, s := range k.slots {
		errs = append(errs, s.Close())
		delete(k.slots, h)
	}
	return errors.Join(errs...)
}
