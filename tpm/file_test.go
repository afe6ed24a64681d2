package tpm

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Keys are generated once: RSA generation is slow under -race.
var (
	keysOnce sync.Once
	ecKey    *ecdsa.PrivateKey
	rsaKey   *rsa.PrivateKey
	edKey    ed25519.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustPKCS8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

// keyDir returns a fresh directory with mode 0700 (t.TempDir's are 0755
// under the usual umask, which Signer rightly refuses).
func keyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeKey writes data to dir/device.key with exactly mode perm.
func writeKey(t *testing.T, dir string, data []byte, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "device.key")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// verify signs a digest with s and checks the signature with pub's algorithm.
func verify(t *testing.T, s crypto.Signer, want crypto.PublicKey) {
	t.Helper()
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if !s.Public().(equaler).Equal(want) {
		t.Fatalf("Public() = %T, not the key in the file", s.Public())
	}
	msg := []byte("telemetry/chocolate-box-1")
	digest := sha256.Sum256(msg)
	switch pub := want.(type) {
	case *ecdsa.PublicKey:
		sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			t.Fatalf("RSA signature does not verify: %v", err)
		}
		// TLS 1.3 signs with PSS through the same interface.
		pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		sig, err = s.Sign(rand.Reader, digest[:], pss)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, pss); err != nil {
			t.Fatalf("RSA-PSS signature does not verify: %v", err)
		}
	case ed25519.PublicKey:
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatal("Ed25519 signature does not verify")
		}
	default:
		t.Fatalf("unexpected public key type %T", want)
	}
}

func TestSignerFormats(t *testing.T) {
	testKeys(t)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	p256OID := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	cert := selfSigned(t)
	tests := []struct {
		name string
		data []byte
		pub  crypto.PublicKey
	}{
		{"PKCS#8 ECDSA", mustPKCS8(t, ecKey), &ecKey.PublicKey},
		{"SEC1 EC PRIVATE KEY", pemOf("EC PRIVATE KEY", sec1), &ecKey.PublicKey},
		{"openssl ecparam output", append(pemOf("EC PARAMETERS", p256OID), pemOf("EC PRIVATE KEY", sec1)...), &ecKey.PublicKey},
		{"PKCS#1 RSA PRIVATE KEY (AWS)", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), &rsaKey.PublicKey},
		{"PKCS#8 RSA", mustPKCS8(t, rsaKey), &rsaKey.PublicKey},
		{"PKCS#8 Ed25519", mustPKCS8(t, edKey), edKey.Public()},
		{"certificate then key", append(cert, mustPKCS8(t, ecKey)...), &ecKey.PublicKey},
		{"CRLF line endings", []byte(strings.ReplaceAll(string(mustPKCS8(t, ecKey)), "\n", "\r\n")), &ecKey.PublicKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeKey(t, keyDir(t), tt.data, 0o600)
			s, err := NewFileStore(path).Signer()
			if err != nil {
				t.Fatalf("Signer: %v", err)
			}
			verify(t, s, tt.pub)
			switch s.(type) {
			case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
				t.Errorf("Signer returned the private key itself (%T)", s)
			}
		})
	}
}

func selfSigned(t *testing.T) []byte {
	t.Helper()
	testKeys(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chocolate-box-1"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Unix(1<<31, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("CERTIFICATE", der)
}

func TestSignerPermissions(t *testing.T) {
	testKeys(t)
	tests := []struct {
		name     string
		fileMode os.FileMode
		dirMode  os.FileMode
		wantMsgs []string // substrings of the error; none: success
	}{
		{"0600 in 0700", 0o600, 0o700, nil},
		{"0400 in 0700", 0o400, 0o700, nil},
		{"0600 in 0500", 0o600, 0o500, nil},
		{"0640 file", 0o640, 0o700, []string{"has mode 0640; run: chmod 600 DIR/device.key"}},
		{"0604 file", 0o604, 0o700, []string{"has mode 0604; run: chmod 600 DIR/device.key"}},
		{"0644 file", 0o644, 0o700, []string{"key file DIR/device.key has mode 0644; run: chmod 600 DIR/device.key"}},
		{"0660 file", 0o660, 0o700, []string{"has mode 0660; run: chmod 600 DIR/device.key"}},
		{"0755 dir", 0o600, 0o755, []string{"key directory DIR has mode 0755; run: chmod 700 DIR"}},
		{"0701 dir", 0o600, 0o701, []string{"key directory DIR has mode 0701; run: chmod 700 DIR"}},
		{"both", 0o644, 0o750, []string{
			"key file DIR/device.key has mode 0644; run: chmod 600 DIR/device.key",
			"key directory DIR has mode 0750; run: chmod 700 DIR",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "identity")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := writeKey(t, dir, mustPKCS8(t, ecKey), tt.fileMode)
			if err := os.Chmod(dir, tt.dirMode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o700) })

			s, err := NewFileStore(path).Signer()
			if tt.wantMsgs == nil {
				if err != nil {
					t.Fatalf("Signer: %v", err)
				}
				verify(t, s, &ecKey.PublicKey)
				return
			}
			if !errors.Is(err, ErrUnsafePermissions) {
				t.Fatalf("Signer error = %v, want ErrUnsafePermissions", err)
			}
			if s != nil {
				t.Error("Signer returned a signer with an error")
			}
			for _, m := range tt.wantMsgs {
				m = strings.ReplaceAll(m, "DIR", dir)
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q\ndoes not contain %q", err, m)
				}
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/var/lib/iotagent/identity/device.key": "/var/lib/iotagent/identity/device.key",
		"/tmp/my keys/device.key":               "'/tmp/my keys/device.key'",
		"/tmp/it's":                             `'/tmp/it'\''s'`,
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSignerBadFiles(t *testing.T) {
	testKeys(t)
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	legacy := pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   []byte("ciphertext"),
	})
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "file is empty"},
		{"blank", []byte(" \n\n"), "file is empty"},
		{"garbage", []byte("not a key at all"), "no PEM block found"},
		{"binary DER", x509.MarshalPKCS1PrivateKey(rsaKey), "no PEM block found"},
		{"truncated PEM", mustPKCS8(t, ecKey)[:100], "no PEM block found"},
		{"corrupt key bytes", pemOf("PRIVATE KEY", []byte("junk")), "parse PRIVATE KEY"},
		{"SEC1 label on PKCS#8", pemOf("EC PRIVATE KEY", []byte{0x30, 0x03, 0x02, 0x01, 0x00}), "parse EC PRIVATE KEY"},
		{"encrypted PKCS#8", pemOf("ENCRYPTED PRIVATE KEY", []byte("ciphertext")), "encrypted"},
		{"legacy encrypted PEM", legacy, "encrypted with a passphrase"},
		{"public key", pemOf("PUBLIC KEY", pubDER), "holds a PUBLIC KEY, not a private key"},
		{"RSA public key", pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), "holds a RSA PUBLIC KEY, not a private key"},
		{"certificate only", selfSigned(t), "holds a CERTIFICATE, not a private key"},
		{"other PEM", pemOf("CERTIFICATE REQUEST", []byte("x")), "no private key found (PEM blocks: CERTIFICATE REQUEST)"},
		{"two keys", append(mustPKCS8(t, ecKey), mustPKCS8(t, rsaKey)...), "holds 2 private keys"},
		{"X25519 cannot sign", mustPKCS8(t, x), "*ecdh.PrivateKey cannot sign"},
		{"too big", make([]byte, maxKeyFileSize+1), "too big to be a private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeKey(t, keyDir(t), tt.data, 0o600)
			s, err := NewFileStore(path).Signer()
			if err == nil {
				t.Fatalf("Signer succeeded (%T), want an error containing %q", s, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q\nwant it to contain %q and the path %s", err, tt.want, path)
			}
			if errors.Is(err, ErrNoKey) || errors.Is(err, ErrUnsafePermissions) {
				t.Errorf("error %v wraps the wrong sentinel", err)
			}
		})
	}
}

func TestSignerMissingOrNotAFile(t *testing.T) {
	dir := keyDir(t)
	missing := filepath.Join(dir, "device.key")
	_, err := NewFileStore(missing).Signer()
	if !errors.Is(err, ErrNoKey) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v, want ErrNoKey and fs.ErrNotExist naming %s", err, missing)
	}
	_, err = NewFileStore(dir).Signer()
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v, want \"not a regular file\"", err)
	}
}

func TestGenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "identity", "device.key")
	fs := NewFileStore(path)
	s, err := fs.Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("Generate made a %T, want an ECDSA P-256 key", s.Public())
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %04o, want %04o", p, got, want)
		}
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(before); b == nil || b.Type != "PRIVATE KEY" {
		t.Errorf("key file is not PKCS#8 PEM:\n%s", before)
	}

	// The key on disk is the key returned.
	loaded, err := fs.Signer()
	if err != nil {
		t.Fatalf("Signer after Generate: %v", err)
	}
	verify(t, loaded, pub)
	verify(t, s, pub)

	// A second Generate must not replace it.
	if _, err := fs.Generate(); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second Generate: %v, want ErrKeyExists", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(before), string(after)); diff != "" {
		t.Errorf("key changed by refused Generate (-want +got):\n%s", diff)
	}
}

func TestGenerateRefuses(t *testing.T) {
	t.Run("open directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "device.key")
		_, err := NewFileStore(path).Generate()
		if !errors.Is(err, ErrUnsafePermissions) || !strings.Contains(err.Error(), "run: chmod 700 "+dir) {
			t.Fatalf("Generate: %v, want ErrUnsafePermissions with the chmod", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("key written despite the error: %v", err)
		}
	})
	t.Run("existing file of any kind", func(t *testing.T) {
		path := writeKey(t, keyDir(t), []byte("not even a key"), 0o600)
		if _, err := NewFileStore(path).Generate(); !errors.Is(err, ErrKeyExists) {
			t.Fatalf("Generate: %v, want ErrKeyExists", err)
		}
	})
}

func TestClose(t *testing.T) {
	fs := NewFileStore(filepath.Join(t.TempDir(), "device.key"))
	var ks KeyStore = fs
	if err := ks.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ks.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := ks.Signer(); !errors.Is(err, ErrClosed) {
		t.Errorf("Signer after Close: %v, want ErrClosed", err)
	}
	if _, err := fs.Generate(); !errors.Is(err, ErrClosed) {
		t.Errorf("Generate after Close: %v, want ErrClosed", err)
	}
}

func ExampleFileStore() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	var ks KeyStore = NewFileStore(filepath.Join(dir, "identity", "device.key"))
	defer ks.Close()
	s, err := ks.Signer()
	if errors.Is(err, ErrNoKey) {
		// First start: create the key, then provision a certificate for it.
		s, err = ks.(Generator).Generate()
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%T\n", s.Public())
	// Output: *ecdsa.PublicKey
}
