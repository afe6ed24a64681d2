package vm_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/ota"
	"github.com/iotagent/iotagent/vm"
)

// keyPair is a minisign key pair that signs the test's releases.
type keyPair struct {
	pub string // the "RW…" line
	sec []byte
}

func newKey(t *testing.T) keyPair {
	t.Helper()
	pub, sec, err := ota.GenerateKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(pub)), "\n")
	return keyPair{pub: lines[len(lines)-1], sec: sec}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// port is vm.Port, failing the test on an error.
func port(t *testing.T, addr string) int {
	t.Helper()
	p, err := vm.Port(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// moduleRoot is the directory holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
