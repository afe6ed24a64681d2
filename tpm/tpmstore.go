package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// TPMStore keeps the device key inside a TPM 2.0: an ECC P-256 signing key,
// a child of the owner hierarchy's storage root key (SRK), persisted at a
// handle so that it survives restarts. The private key is created inside
// the TPM and marked fixedTPM and fixedParent: there is no way to export it,
// through this API or any other.
//
// One mutex serialises every TPM command, from the store and from the
// signers it hands out, so a TPMStore and its signers are safe for
// concurrent use.
type TPMStore struct {
	dev    string // for messages: "/dev/tpmrm0", "tcp://127.0.0.1:2321"
	handle tpm2.TPMHandle

	mu     sync.Mutex // held for every TPM command; guards the fields below
	t      transport.TPMCloser
	closed bool
	gen    uint64 // incremented by Replace; signers of an older key fail
}

var (
	_ KeyStore  = (*TPMStore)(nil)
	_ Generator = (*TPMStore)(nil)
)

// keyTemplate is the device key: ECC P-256, ECDSA with SHA-256 only,
// unrestricted (it signs any digest: TLS handshakes, CSRs), created inside
// the TPM and never leaving it, usable with an empty password and exempt
// from dictionary-attack lockout.
var keyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		SignEncrypt:         true,
		NoDA:                true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		CurveID: tpm2.TPMECCNistP256,
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
	}),
}

// OpenTPM connects to the TPM that cfg names and flushes transient objects
// left behind by earlier clients (a software TPM has no resource manager, so
// a crashed client's objects would otherwise fill its few slots). It does
// not read or create the key: Signer and Generate do.
//
// Without a TPM the error wraps ErrNoTPM and says what to check, e.g.
// "open /dev/tpmrm0: no such file or directory: is the TPM enabled
// (dtoverlay=tpm-slb9670) and is this user in group tss?".
//
// swtpm serves one client at a time: while a store is open on it, other
// clients (tpm2-tools) wait, and so does a second store.
func OpenTPM(cfg TPMConfig) (*TPMStore, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open TPM: %w", err)
	}
	d, err := parseDevice(cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("open TPM: %w", err)
	}
	t, err := d.open()
	if err != nil {
		return nil, err
	}
	s, err := newTPMStore(t, d.String(), cfg.Handle)
	if err != nil {
		t.Close()
		return nil, err
	}
	return s, nil
}

// NewTPMStore returns a store that talks to the TPM through t and keeps the
// key at handle (0 means DefaultHandle). It flushes stale transient objects
// as OpenTPM does, and closes t on Close. It is for TPMs that OpenTPM cannot
// reach, such as an in-process simulator in tests.
func NewTPMStore(t transport.TPMCloser, handle uint32) (*TPMStore, error) {
	if t == nil {
		return nil, errors.New("open TPM: nil transport")
	}
	cfg := TPMConfig{Device: "/", Handle: handle}.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open TPM: %w", err)
	}
	return newTPMStore(t, fmt.Sprintf("%T", t), cfg.Handle)
}

func newTPMStore(t transport.TPMCloser, dev string, handle uint32) (*TPMStore, error) {
	s := &TPMStore{dev: dev, handle: tpm2.TPMHandle(handle), t: retryTPM{t}}
	if err := s.flushTransientsLocked(); err != nil {
		return nil, fmt.Errorf("open TPM %s: flush stale transient objects: %w%s", dev, err, failureHint(dev, err))
	}
	return s, nil
}

// failureHint explains TPM_RC_FAILURE from swtpm, which is what it answers
// when it was started without the flags that let a client skip TPM2_Startup.
func failureHint(dev string, err error) string {
	if strings.HasPrefix(dev, "tcp://") && errors.Is(err, tpm2.TPMRCFailure) {
		return " (start swtpm with --flags not-need-init,startup-clear)"
	}
	return ""
}

// flushTransientsLocked flushes every transient object the TPM reports. With
// a resource manager (/dev/tpmrm0) it sees only this connection's, which is
// none; on swtpm it removes what crashed clients left.
func (s *TPMStore) flushTransientsLocked() error {
	first := uint32(tpm2.TPMHTTransient) << 24
	var stale []tpm2.TPMHandle
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: first, PropertyCount: 64}.Execute(s.t)
		if err != nil {
			return fmt.Errorf("list transient handles: %w", err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return fmt.Errorf("list transient handles: %w", err)
		}
		for _, h := range hs.Handle {
			if uint32(h)>>24 == uint32(tpm2.TPMHTTransient) {
				stale = append(stale, h)
			}
		}
		if !rsp.MoreData || len(hs.Handle) == 0 || len(stale) > 1024 {
			break
		}
		first = uint32(hs.Handle[len(hs.Handle)-1]) + 1
	}
	for _, h := range stale {
		if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(s.t); err != nil {
			return fmt.Errorf("flush 0x%08x: %w", uint32(h), err)
		}
	}
	return nil
}

// Handle returns the persistent handle of the device key.
func (s *TPMStore) Handle() uint32 { return uint32(s.handle) }

// String describes the store for logs.
func (s *TPMStore) String() string {
	return fmt.Sprintf("tpm %s handle 0x%08x", s.dev, uint32(s.handle))
}

// Close closes the connection to the TPM; the key stays persisted in it.
// Signers handed out fail with ErrClosed afterwards. It is safe to call more
// than once.
func (s *TPMStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.t.Close(); err != nil {
		return fmt.Errorf("close TPM %s: %w", s.dev, err)
	}
	return nil
}

// Signer returns a signer for the key persisted at the store's handle. If
// there is none, the error wraps ErrNoKey. If the object there is not an
// unrestricted ECC P-256 signing key that cannot leave the TPM, Signer
// refuses it.
func (s *TPMStore) Signer() (crypto.Signer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	k, err := s.readKeyLocked()
	if err != nil {
		return nil, fmt.Errorf("load TPM key: %w", err)
	}
	return k, nil
}

// Generate creates the device key in the TPM, persists it at the store's
// handle and returns its signer. It refuses to replace a key already there
// with an error wrapping ErrKeyExists; Replace does that.
func (s *TPMStore) Generate() (crypto.Signer, error) {
	return s.generate(false)
}

// Replace creates a new device key and persists it at the store's handle in
// place of the one there (if any). The old key is destroyed: certificates
// issued for it become useless, and signers handed out for it fail. The new
// key is created and loaded before the old one is evicted.
func (s *TPMStore) Replace() (crypto.Signer, error) {
	return s.generate(true)
}

func (s *TPMStore) generate(replace bool) (crypto.Signer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	old, err := tpm2.ReadPublic{ObjectHandle: s.handle}.Execute(s.t)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, tpm2.TPMRCHandle):
		return nil, fmt.Errorf("generate TPM key: read handle 0x%08x: %w", uint32(s.handle), err)
	case exists && !replace:
		return nil, fmt.Errorf("generate TPM key: a key is already persisted at handle 0x%08x in %s: %w",
			uint32(s.handle), s.dev, ErrKeyExists)
	}

	// Transient objects are flushed on every path.
	srk, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(s.t)
	if err != nil {
		return nil, fmt.Errorf("generate TPM key: create storage root key: %w", err)
	}
	defer s.flushLocked(srk.ObjectHandle)
	parent := tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}

	child, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(keyTemplate)}.Execute(s.t)
	if err != nil {
		return nil, fmt.Errorf("generate TPM key: create key: %w", err)
	}
	loaded, err := tpm2.Load{ParentHandle: parent, InPrivate: child.OutPrivate, InPublic: child.OutPublic}.Execute(s.t)
	if err != nil {
		return nil, fmt.Errorf("generate TPM key: load key: %w", err)
	}
	defer s.flushLocked(loaded.ObjectHandle)

	if exists {
		if _, err := (tpm2.EvictControl{
			Auth:             tpm2.TPMRHOwner,
			ObjectHandle:     tpm2.NamedHandle{Handle: s.handle, Name: old.Name},
			PersistentHandle: s.handle,
		}).Execute(s.t); err != nil {
			return nil, fmt.Errorf("replace TPM key: evict the old key at 0x%08x: %w", uint32(s.handle), err)
		}
		s.gen++
	}
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: loaded.ObjectHandle, Name: loaded.Name},
		PersistentHandle: s.handle,
	}).Execute(s.t); err != nil {
		return nil, fmt.Errorf("generate TPM key: persist at 0x%08x: %w", uint32(s.handle), err)
	}
	k, err := s.readKeyLocked()
	if err != nil {
		return nil, fmt.Errorf("generate TPM key: read back: %w", err)
	}
	return k, nil
}

// flushLocked flushes a transient object. A failed flush only leaks a slot
// until the next open, so its error is dropped.
func (s *TPMStore) flushLocked(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(s.t)
}

// readKeyLocked reads the persistent key's public area and checks that it
// is a key this store can use.
func (s *TPMStore) readKeyLocked() (*tpmSigner, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: s.handle}.Execute(s.t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, fmt.Errorf("no key at handle 0x%08x in %s: %w", uint32(s.handle), s.dev, ErrNoKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read handle 0x%08x: %w", uint32(s.handle), err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("read handle 0x%08x: %w", uint32(s.handle), err)
	}
	ecPub, err := checkKey(pub)
	if err != nil {
		return nil, fmt.Errorf("object at handle 0x%08x in %s: %w", uint32(s.handle), s.dev, err)
	}
	return &tpmSigner{s: s, pub: ecPub, name: rsp.Name, gen: s.gen}, nil
}

// checkKey returns the public key of pub if it is an unrestricted,
// non-exportable ECC P-256 signing key whose scheme allows ECDSA with
// SHA-256.
func checkKey(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	if pub.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("is not an ECC key (type 0x%04x)", uint16(pub.Type))
	}
	a := pub.ObjectAttributes
	switch {
	case !a.SignEncrypt:
		return nil, errors.New("is not a signing key")
	case a.Restricted:
		return nil, errors.New("is a restricted key, which cannot sign TLS handshakes or CSRs")
	case !a.FixedTPM || !a.FixedParent:
		return nil, errors.New("can be duplicated out of the TPM (fixedTPM or fixedParent is clear); refusing it as the device key")
	case !a.UserWithAuth:
		return nil, errors.New("needs a policy session to sign (userWithAuth is clear)")
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("read ECC parameters: %w", err)
	}
	if parms.CurveID != tpm2.TPMECCNistP256 {
		return nil, fmt.Errorf("is on curve 0x%04x, want NIST P-256", uint16(parms.CurveID))
	}
	switch parms.Scheme.Scheme {
	case tpm2.TPMAlgNull:
	case tpm2.TPMAlgECDSA:
		d, err := parms.Scheme.Details.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("read ECDSA scheme: %w", err)
		}
		if d.HashAlg != tpm2.TPMAlgSHA256 {
			return nil, fmt.Errorf("signs with hash 0x%04x, want SHA-256", uint16(d.HashAlg))
		}
	default:
		return nil, fmt.Errorf("has signing scheme 0x%04x, want ECDSA", uint16(parms.Scheme.Scheme))
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("read public point: %w", err)
	}
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) > 32 || len(y) > 32 {
		return nil, fmt.Errorf("public point has %d- and %d-byte coordinates, want at most 32", len(x), len(y))
	}
	raw := make([]byte, 65)
	raw[0] = 4 // uncompressed
	copy(raw[1+32-len(x):33], x)
	copy(raw[33+32-len(y):], y)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw) // checks the point is on the curve
	if err != nil {
		return nil, fmt.Errorf("public point: %w", err)
	}
	return k, nil
}

// tpmSigner signs with the persistent key through its store's mutex. It
// holds no key material, only the handle's Name and the public key.
type tpmSigner struct {
	s    *TPMStore
	pub  *ecdsa.PublicKey
	name tpm2.TPM2BName
	gen  uint64
}

// Public returns the key's *ecdsa.PublicKey.
func (k *tpmSigner) Public() crypto.PublicKey { return k.pub }

// Sign signs a SHA-256 digest in the TPM and returns the ASN.1 DER ECDSA
// signature that crypto/tls, crypto/x509 and ecdsa.VerifyASN1 expect. Any
// other hash is refused: the key's scheme is fixed to SHA-256, which is
// what TLS and x509 use with a P-256 key.
func (k *tpmSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		return nil, errors.New("tpm sign: no hash given (opts is nil); want crypto.SHA256")
	}
	if h := opts.HashFunc(); h != crypto.SHA256 {
		return nil, fmt.Errorf("tpm sign: hash %v is not supported: the TPM key signs SHA-256 digests only", h)
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("tpm sign: digest is %d bytes, want %d (SHA-256)", len(digest), sha256.Size)
	}
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("tpm sign: %w", ErrClosed)
	}
	if s.gen != k.gen {
		return nil, fmt.Errorf("tpm sign: the key at handle 0x%08x was replaced; get a new signer", uint32(s.handle))
	}
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: s.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.t)
	if err != nil {
		return nil, fmt.Errorf("tpm sign: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpm sign: %w", err)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
	if err != nil {
		return nil, fmt.Errorf("tpm sign: encode signature: %w", err)
	}
	return der, nil
}

// retryTPM resends a command the TPM answered with TPM_RC_RETRY or
// TPM_RC_YIELDED, which a real TPM may do at any time and which mean "send
// the same command again".
type retryTPM struct{ t transport.TPMCloser }

// maxRetries bounds the resends of one command.
const maxRetries = 5

func (r retryTPM) Send(cmd []byte) ([]byte, error) {
	for i := 0; ; i++ {
		rsp, err := r.t.Send(cmd)
		if err != nil || i == maxRetries || len(rsp) < 10 {
			return rsp, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded:
			continue
		}
		return rsp, nil
	}
}

func (r retryTPM) Close() error { return r.t.Close() }
