package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/iotagent/iotagent/internal/atomicfile"
)

// maxKeyFileSize bounds what Signer reads: an RSA-4096 key in PEM is about
// 3.3 KB, so anything near this is not a key file.
const maxKeyFileSize = 64 << 10

// FileStore keeps the device key in a PEM file that only its owner may read
// or write, in a directory that only its owner may enter. It is safe for
// concurrent use.
type FileStore struct {
	path string

	mu     sync.Mutex
	closed bool
}

var (
	_ KeyStore  = (*FileStore)(nil)
	_ Generator = (*FileStore)(nil)
)

// NewFileStore returns a store for the key at path. It touches nothing on
// disk: Signer reads the key, Generate creates it.
func NewFileStore(path string) *FileStore {
	return &FileStore{path: path}
}

// Path returns the key file's path.
func (f *FileStore) Path() string { return f.path }

// String describes the store for logs.
func (f *FileStore) String() string { return "file " + f.path }

// Close marks the store closed. It is safe to call more than once.
func (f *FileStore) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *FileStore) checkOpen() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	return nil
}

// Signer loads the key file and returns a signer for it. The file may hold a
// PKCS#8 "PRIVATE KEY" (ECDSA, RSA or Ed25519), a SEC1 "EC PRIVATE KEY"
// (optionally after an "EC PARAMETERS" block, as openssl ecparam writes it)
// or a PKCS#1 "RSA PRIVATE KEY" (what AWS IoT's CreateKeysAndCertificate
// hands out), possibly next to certificates, which are ignored.
//
// Signer refuses a key file with any group or other permission bits, or one
// in a directory with any, with an error wrapping ErrUnsafePermissions that
// names the chmod to run. A missing file is an error wrapping ErrNoKey and
// fs.ErrNotExist.
func (f *FileStore) Signer() (crypto.Signer, error) {
	if err := f.checkOpen(); err != nil {
		return nil, err
	}
	fh, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load key: key file %s does not exist: %w", f.path, errors.Join(ErrNoKey, err))
	}
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	defer fh.Close()
	// Stat the open file, not the path, so the mode checked is the mode of
	// the bytes read.
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load key: %s is not a regular file", f.path)
	}
	if err := checkPermissions(f.path, fi); err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load key: read %s: %w", f.path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("load key: %s is over %d KiB, too big to be a private key", f.path, maxKeyFileSize>>10)
	}
	s, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", f.path, err)
	}
	return s, nil
}

// checkPermissions reports every permission problem of the key file (whose
// open-file info is fi) and its directory, each with the command that fixes it.
func checkPermissions(path string, fi fs.FileInfo) error {
	var errs []error
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		errs = append(errs, fmt.Errorf("%w: key file %s has mode %04o; run: chmod 600 %s",
			ErrUnsafePermissions, path, m, shellQuote(path)))
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		errs = append(errs, fmt.Errorf("check key directory: %w", err))
	} else if m := di.Mode().Perm(); m&0o077 != 0 {
		errs = append(errs, fmt.Errorf("%w: key directory %s has mode %04o; run: chmod 700 %s",
			ErrUnsafePermissions, dir, m, shellQuote(dir)))
	}
	return errors.Join(errs...)
}

// shellQuote quotes p for a shell if it needs it, so the suggested command
// can be pasted.
func shellQuote(p string) string {
	if p != "" && strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@,") == "" {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}

// parseKey finds the one private key among the PEM blocks in data.
func parseKey(data []byte) (crypto.Signer, error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errors.New("file is empty")
	}
	var (
		key     *pem.Block
		nkeys   int
		skipped []string
	)
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			if b.Headers["Proc-Type"] != "" || b.Headers["DEK-Info"] != "" {
				return nil, errors.New("the private key is encrypted with a passphrase; store it unencrypted (openssl pkey -in KEY -out KEY.plain) in a file only its owner can read")
			}
			key = b
			nkeys++
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted (PKCS#8); store it unencrypted (openssl pkey -in KEY -out KEY.plain) in a file only its owner can read")
		default:
			skipped = append(skipped, b.Type)
		}
	}
	switch {
	case nkeys > 1:
		return nil, fmt.Errorf("file holds %d private keys, want exactly one", nkeys)
	case nkeys == 0 && len(skipped) == 0:
		return nil, errors.New("no PEM block found; want a PEM private key (-----BEGIN PRIVATE KEY-----)")
	case nkeys == 0:
		for _, t := range skipped {
			if strings.Contains(t, "PUBLIC KEY") || t == "CERTIFICATE" {
				return nil, fmt.Errorf("file holds a %s, not a private key; point the configuration at the private key file", t)
			}
		}
		return nil, fmt.Errorf("no private key found (PEM blocks: %s)", strings.Join(skipped, ", "))
	}

	var (
		k   any
		err error
	)
	switch key.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(key.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(key.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(key.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", key.Type, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T cannot sign; want an ECDSA, RSA or Ed25519 key", k)
	}
	return signer{s}, nil
}

// signer exposes only Public and Sign, so that callers cannot type-assert
// their way to the private key: the same contract a TPM key will have.
type signer struct{ s crypto.Signer }

func (s signer) Public() crypto.PublicKey { return s.s.Public() }

func (s signer) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.s.Sign(rand, digest, opts)
}

// Generate creates a new ECDSA P-256 key, writes it as PKCS#8 PEM with mode
// 0600 (atomically, creating the directory with mode 0700 if needed) and
// returns its signer. It never replaces an existing key: if the file exists
// it fails with an error wrapping ErrKeyExists. If the directory exists but
// is open to group or others it fails with ErrUnsafePermissions, since
// Signer would refuse the key afterwards.
func (f *FileStore) Generate() (crypto.Signer, error) {
	if err := f.checkOpen(); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(f.path); err == nil {
		return nil, fmt.Errorf("generate key: %s: %w", f.path, ErrKeyExists)
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("generate key: create directory: %w", err)
	}
	di, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	if m := di.Mode().Perm(); m&0o077 != 0 {
		return nil, fmt.Errorf("generate key: %w: key directory %s has mode %04o; run: chmod 700 %s",
			ErrUnsafePermissions, dir, m, shellQuote(dir))
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("generate key: marshal: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := atomicfile.WriteNew(f.path, pemBytes, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("generate key: %s: %w", f.path, ErrKeyExists)
		}
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return signer{k}, nil
}
