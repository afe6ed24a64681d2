package ota

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"
)

// Meta is what a release's signature vouches for besides the file's
// bytes: the version and the CPU it is for. They travel in the minisign
// trusted comment, which the signature covers:
//
//	timestamp:1700000000	file:iotagent	hashed	version:1.4.0	arch:arm64
//
// `iotagent ota sign|release` write it; with the minisign tool,
// `minisign -S -m FILE -t "version:1.4.0 arch:arm64"`. The device takes
// the version and arch its rules use (same version, downgrade, failed
// before, arch) from here, and refuses a job document that says otherwise.
type Meta struct {
	Version string
	Arch    string // GOARCH, or a name goarch knows (aarch64, armv7, ...)
}

// Errors of the signed metadata. All fail the job before any slot is
// touched.
var (
	// ErrUnsignedMeta: the signature's trusted comment names no version
	// or no arch.
	ErrUnsignedMeta = errors.New("ota: the signature vouches for no version and arch")
	// ErrSignedMismatch: the job document's version or arch differs from
	// what the signature vouches for.
	ErrSignedMismatch = errors.New("ota: the job document disagrees with its signature")
)

// Check reports whether m can be signed: an N.N.N version and a known arch.
func (m Meta) Check() error {
	if _, err := parseVersion(m.Version); err != nil {
		return fmt.Errorf("version: %w", err)
	}
	if goarch(m.Arch) == "" {
		return fmt.Errorf("arch: unknown %q", m.Arch)
	}
	return nil
}

// trustedComment is the comment Sign writes: minisign's own fields, then
// the metadata.
func (m Meta) trustedComment(name string, now time.Time) string {
	return "timestamp:" + strconv.FormatInt(now.Unix(), 10) + "\tfile:" + name + "\thashed\tversion:" + m.Version + "\tarch:" + m.Arch
}

// ParseTrustedComment reads the version and arch from a minisign trusted
// comment: fields separated by tabs or spaces, each "key:value"; other
// fields are ignored. A key given twice, or a missing one, is an error.
func ParseTrustedComment(c string) (Meta, error) {
	var m Meta
	seen := map[string]bool{}
	for _, f := range strings.Fields(c) {
		k, v, ok := strings.Cut(f, ":")
		if !ok || (k != "version" && k != "arch") {
			continue
		}
		if seen[k] {
			return Meta{}, fmt.Errorf("%w: %q appears twice in the trusted comment %q", ErrUnsignedMeta, k, c)
		}
		seen[k] = true
		if k == "version" {
			m.Version = v
		} else {
			m.Arch = v
		}
	}
	if m.Version == "" || m.Arch == "" {
		return Meta{}, fmt.Errorf("%w: the trusted comment %q has no version:V and arch:A (sign with iotagent ota sign --version V, or minisign -t \"version:V arch:A\")", ErrUnsignedMeta, c)
	}
	if err := m.Check(); err != nil {
		return Meta{}, fmt.Errorf("%w: trusted comment %q: %v", ErrUnsignedMeta, c, err)
	}
	return m, nil
}

// signedMeta checks that the release's signature comes from one of keys
// and that its trusted comment is the one that key signed (this needs no
// download: the comment is signed together with the file's signature, not
// the file), and returns the metadata in it. verifyFile later checks the
// file against the same signature.
func signedMeta(r Release, keys []minisign.PublicKey) (Meta, error) {
	if len(keys) == 0 {
		return Meta{}, ErrNoKeys
	}
	sig, err := parseSignature(r.Signature)
	if err != nil {
		return Meta{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	for _, k := range keys {
		if k.ID() != sig.KeyID {
			continue
		}
		if !commentSigned(k, sig) {
			return Meta{}, fmt.Errorf("%w: the trusted comment's signature does not verify", ErrBadSignature)
		}
		return ParseTrustedComment(sig.TrustedComment)
	}
	return Meta{}, fmt.Errorf("%w: key ID %016X", ErrUntrustedKey, sig.KeyID)
}

// commentSigned verifies minisign's global signature: Ed25519 over the
// signature followed by the trusted comment.
func commentSigned(k minisign.PublicKey, sig minisign.Signature) bool {
	raw, err := base64.StdEncoding.DecodeString(k.String())
	if err != nil || len(raw) != 2+8+ed25519.PublicKeySize {
		return false
	}
	msg := append(append([]byte(nil), sig.Signature[:]...), sig.TrustedComment...)
	return ed25519.Verify(ed25519.PublicKey(raw[10:]), msg, sig.CommentSignature[:])
}

// checkSigned compares the job document's version and arch with the
// signed ones.
func checkSigned(r Release, m Meta) error {
	var probs []string
	if r.Version != m.Version {
		probs = append(probs, fmt.Sprintf("the job says version %s, the signature %s", r.Version, m.Version))
	}
	if goarch(r.Arch) != goarch(m.Arch) {
		probs = append(probs, fmt.Sprintf("the job says arch %s, the signature %s", r.Arch, m.Arch))
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: %s", ErrSignedMismatch, strings.Join(probs, "; "))
	}
	return nil
}
