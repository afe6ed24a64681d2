package ota

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"aead.dev/minisign"
)

// Helpers for the release side (iotagent ota sign|keygen|release): what
// a release engineer runs on a workstation, not on the device.

// ErrKeyEncrypted is returned by LoadSecretKey for an encrypted key
// without a password.
var ErrKeyEncrypted = errors.New("load secret key: the key is encrypted and no password was given")

// SecretKey is a minisign secret key file, loaded (and decrypted: with
// minisign's scrypt parameters that costs about 1 GiB and a few seconds,
// so load it once).
type SecretKey struct {
	s   signer
	pub string
}

// LoadSecretKey reads a minisign secret key file (from minisign -G, or
// GenerateKey); password is needed for an encrypted key. It reports the
// same errors as Sign.
func LoadSecretKey(sec []byte, password string) (*SecretKey, error) {
	text := bytes.TrimSpace(sec)
	if i := bytes.IndexByte(text, '\n'); i >= 0 && bytes.HasPrefix(text, []byte("untrusted comment:")) {
		text = bytes.TrimSpace(text[i+1:])
	}
	raw, err := base64.StdEncoding.DecodeString(string(text))
	if err != nil || len(raw) != secretKeySize {
		return nil, errors.New("load secret key: not a minisign secret key")
	}
	if raw[2] != 0 || raw[3] != 0 {
		if password == "" {
			return nil, ErrKeyEncrypted
		}
		sk, err := minisign.DecryptKey(password, sec)
		if err != nil {
			return nil, fmt.Errorf("load secret key: wrong password or damaged key: %w", err)
		}
		pk, ok := sk.Public().(minisign.PublicKey)
		if !ok {
			return nil, errors.New("load secret key: no public key")
		}
		return &SecretKey{pub: pk.String(), s: encryptedSigner(sk)}, nil
	}
	s, err := loadSecretKey(sec, password)
	if err != nil {
		return nil, err
	}
	// Unencrypted: keynum at 54, the Ed25519 key (seed, public) at 62.
	var pub [2 + 8 + 32]byte
	copy(pub[:2], algEd[:])
	copy(pub[2:10], raw[54:62])
	copy(pub[10:], raw[62+32:126])
	return &SecretKey{s: s, pub: base64.StdEncoding.EncodeToString(pub[:])}, nil
}

// PublicKey is the key's public key ("RW…", the second line of the .pub
// file).
func (k *SecretKey) PublicKey() string { return k.pub }

// KeyID is the key ID as minisign prints it (upper-case hex).
func (k *SecretKey) KeyID() string { return keyIDString(k.s.id) }

// Sign signs what r reads as Sign does.
func (k *SecretKey) Sign(r io.Reader, name string, now time.Time, meta Meta) ([]byte, error) {
	return signWith(k.s, r, name, now, meta)
}

// KeyID returns the key ID of a minisign public key, as minisign prints
// it (upper-case hex).
func KeyID(publicKey string) (string, error) {
	pk, err := ParsePublicKey(publicKey)
	if err != nil {
		return "", err
	}
	return keyIDString(pk.ID()), nil
}

// ELFArch returns the GOARCH of the ELF executable at path ("amd64",
// "arm64", "arm", …): the arch a release of it is for.
func ELFArch(path string) (string, error) {
	_, machine, err := readELFHeader(path)
	if err != nil {
		return "", fmt.Errorf("%s: not an ELF executable: %w", path, err)
	}
	for arch, m := range elfMachine {
		if machine == m {
			return arch, nil
		}
	}
	return "", fmt.Errorf("%s: ELF %s is not one iotagent runs on", path, machineName(machine))
}

// FileDigest returns the size and the SHA-256 (lowercase hex) of the file
// at path, read once.
func FileDigest(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// Document returns r as an "ota" job document: the JSON that
// ParseDocument reads and that `aws iot create-job --document` takes.
func (r Release) Document() ([]byte, error) {
	type file struct {
		URL       string `json:"url"`
		Size      int64  `json:"size"`
		SHA256    string `json:"sha256"`
		Signature string `json:"signature"`
		Arch      string `json:"arch"`
	}
	d := struct {
		Operation      string `json:"operation"`
		Version        string `json:"version"`
		AllowDowngrade bool   `json:"allow_downgrade,omitempty"`
		File           file   `json:"file"`
	}{"ota", r.Version, r.AllowDowngrade, file{r.URL, r.Size, r.SHA256, r.Signature, r.Arch}}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // a presigned-URL placeholder keeps its & and <>
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode ota document: %w", err)
	}
	if b.Len() > MaxDocument {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadDocument, b.Len(), MaxDocument)
	}
	return b.Bytes(), nil
}

// VerifyRelease checks the file at path against r as a device does before
// it installs it (size, SHA-256, the minisign signature by one of
// trustedKeys, the version and arch it vouches for), and that it is an executable for r.Arch rather than for
// this machine: what a release engineer checks before publishing r.
func VerifyRelease(path string, r Release, trustedKeys []string) error {
	arch := goarch(r.Arch)
	if arch == "" {
		return fmt.Errorf("%w: unknown arch %q", ErrWrongArch, r.Arch)
	}
	var keys []minisign.PublicKey
	for i, k := range trustedKeys {
		pk, err := ParsePublicKey(k)
		if err != nil {
			return fmt.Errorf("trusted key %d: %w", i, err)
		}
		keys = append(keys, pk)
	}
	m, err := signedMeta(r, keys)
	if err != nil {
		return err
	}
	if err := checkSigned(r, m); err != nil {
		return err
	}
	// verifyFile checks the ELF header last, against this machine's CPU:
	// ErrWrongArch from it means everything else passed.
	if err := verifyFile(path, r, keys); err != nil && !errors.Is(err, ErrWrongArch) {
		return err
	}
	return checkELF(path, arch)
}
