package rotate

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iotagent/iotagent/agent/internal/fleetapi"
	"github.com/iotagent/iotagent/internal/atomicfile"
	"github.com/iotagent/iotagent/internal/statefile"
)

// Transport is the device's current MQTT connection. *transport.Client
// satisfies it.
type Transport = fleetapi.Transport

// KeyStore makes and opens keys by reference ("file:/path",
// "tpm:0x81000011"). FileKeys and TPMKeys implement it.
type KeyStore interface {
	// Next returns the reference of the slot the next key goes to, given
	// the current key's reference; never the current one.
	Next(current string) string
	// Create makes a new key at ref, replacing any key there.
	Create(ref string) (crypto.Signer, error)
	// Signer opens the key at ref.
	Signer(ref string) (crypto.Signer, error)
}

// Verifier connects once with cert (client id = the thing name) and
// reports whether the broker accepted it. DialVerifier is the real one.
type Verifier func(ctx context.Context, cert tls.Certificate) error

// Options configure Rotate.
type Options struct {
	// StateDir is the agent's state directory (required).
	StateDir string
	// Template and Params are RegisterThing's template name and parameters:
	// the ones the device was provisioned with, so that the template finds
	// the same thing.
	Template string
	Params   map[string]string
	// CurrentCertificateFile and CurrentKeyRef name the identity in use
	// when no rotation has been committed yet (Load's answer wins).
	CurrentCertificateFile string
	CurrentKeyRef          string
	// Verify checks the new certificate before the switch (required).
	Verify Verifier
	// ResponseTimeout bounds the wait for each answer (default 10 s); a
	// request is sent up to Attempts times (default 3).
	ResponseTimeout time.Duration
	Attempts        int
	// Now is the clock for RotatedAt; nil means time.Now.
	Now func() time.Time
}

// Identity is a committed rotation: STATE_DIR/identity/rotated.json.
type Identity struct {
	CertificateID    string    `json:"certificateId"`
	CertificateFile  string    `json:"certificateFile"`
	KeyRef           string    `json:"keyRef"`
	OldCertificateID string    `json:"oldCertificateId"`
	RotatedAt        time.Time `json:"rotatedAt"`
}

// Result is what Rotate did.
type Result struct {
	NewCertFile      string
	NewKeyRef        string
	NewCertificateID string
	// OldCertificateID should be deactivated once the device runs on the
	// new one (aws iot update-certificate --new-status INACTIVE).
	OldCertificateID string
}

var (
	// ErrNotRotated: no rotation has been committed in this state dir.
	ErrNotRotated = errors.New("rotate: no rotated identity")
	// ErrInvalidResponse: an answer could not be used.
	ErrInvalidResponse = fleetapi.ErrInvalidResponse
	// ErrNoResponse: no answer after every attempt.
	ErrNoResponse = fleetapi.ErrNoResponse
	// ErrVerify: the new certificate did not connect; the old identity
	// stays in use and the next Rotate tries Verify again.
	ErrVerify = errors.New("rotate: new certificate did not connect")
)

// RejectedError is a …/rejected answer.
type RejectedError = fleetapi.RejectedError

// Due reports whether cert expires within days of now (a certificate
// already expired is due too).
func Due(cert *x509.Certificate, now time.Time, days int) bool {
	return cert != nil && !now.Add(time.Duration(days)*24*time.Hour).Before(cert.NotAfter)
}

// File names under StateDir/identity.
const (
	dirName      = "identity"
	rotatedFile  = "rotated.json"
	progressFile = "rotation.json"
)

// Load returns the committed rotated identity or ErrNotRotated. The agent
// uses its certificate and key instead of the configured ones.
//
// A rotated.json that cannot be read or is incomplete is moved aside and
// recorded (internal/statefile), and Load returns ErrNotRotated: the agent
// uses the configured identity, which works until the old certificate is
// deactivated; the event says where the rotated certificate is.
func Load(stateDir string) (Identity, error) {
	path := filepath.Join(stateDir, dirName, rotatedFile)
	var id Identity
	valid := func() error {
		if id.CertificateFile == "" || id.KeyRef == "" {
			return errors.New("incomplete: no certificateFile or keyRef")
		}
		return nil
	}
	then := func(string) string {
		certs, _ := filepath.Glob(filepath.Join(stateDir, dirName, "device-*.crt"))
		return fmt.Sprintf("using the identity from before the rotation (identity.cert and identity.key); if that certificate "+
			"was deactivated, point identity.cert at the rotated certificate (%s) and identity.key at its key, or provision again",
			strings.Join(certs, ", "))
	}
	found, _, err := statefile.ReadJSON(stateDir, path, &id, valid, then)
	switch {
	case err != nil:
		return Identity{}, fmt.Errorf("rotate: load: %w", err)
	case !found:
		return Identity{}, ErrNotRotated
	}
	return id, nil
}

// progress is the persisted state of an unfinished rotation.
type progress struct {
	KeyRef           string            `json:"keyRef"`
	OldCertificateID string            `json:"oldCertificateId"`
	CertificateID    string            `json:"certificateId,omitempty"`
	CertificatePEM   string            `json:"certificatePem,omitempty"`
	Token            string            `json:"certificateOwnershipToken,omitempty"`
	Template         string            `json:"template,omitempty"`
	Params           map[string]string `json:"parameters,omitempty"`
	Registered       bool              `json:"registered,omitempty"`
}

// testHook, when set, runs after each persisted step with its name; an
// error stops Rotate there, as a crash would. Nil in production.
var testHook func(step string) error

func hook(step string) error {
	if testHook != nil {
		return testHook(step)
	}
	return nil
}

// Rotate renews the device certificate (see the package doc) and commits
// the switch once the new certificate has connected. It resumes whatever
// an interrupted call left. t must be the device's own connection.
func Rotate(ctx context.Context, t Transport, ks KeyStore, o Options) (Result, error) {
	if o.StateDir == "" || o.Template == "" || o.Verify == nil || t == nil || ks == nil {
		return Result{}, errors.New("rotate: StateDir, Template, Verify, a transport and a key store are required")
	}
	if o.ResponseTimeout <= 0 {
		o.ResponseTimeout = 10 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	dir := filepath.Join(o.StateDir, dirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{}, fmt.Errorf("rotate: state dir: %w", err)
	}
	r := &rotation{t: t, ks: ks, o: o, dir: dir}
	prog, err := r.readProgress()
	if err != nil {
		return Result{}, err
	}
	if prog == nil {
		cur, err := r.current()
		if err != nil {
			return Result{}, err
		}
		prog = &progress{KeyRef: ks.Next(cur.KeyRef), OldCertificateID: cur.CertificateID}
		if err := r.writeProgress(prog); err != nil {
			return Result{}, err
		}
		if err := hook("started"); err != nil {
			return Result{}, err
		}
	}
	for round := 0; ; round++ {
		if prog.CertificatePEM == "" {
			if err := r.createCertificate(ctx, prog); err != nil {
				return Result{}, err
			}
		}
		if !prog.Registered {
			err := r.registerThing(ctx, prog)
			var rej *RejectedError
			if errors.As(err, &rej) && rej.ErrorCode == "InvalidCertificateOwnershipToken" && round == 0 {
				// Expired, forgotten or already used: start over with a new key.
				prog = &progress{KeyRef: prog.KeyRef, OldCertificateID: prog.OldCertificateID}
				if err := r.writeProgress(prog); err != nil {
					return Result{}, err
				}
				continue
			}
			if err != nil {
				return Result{}, err
			}
		}
		return r.verifyAndCommit(ctx, prog)
	}
}

type rotation struct {
	t   Transport
	ks  KeyStore
	o   Options
	dir string
}

// current is the identity in use: the last committed rotation, else the
// configured one.
func (r *rotation) current() (Identity, error) {
	if id, err := Load(r.o.StateDir); err == nil {
		return id, nil
	} else if !errors.Is(err, ErrNotRotated) {
		return Identity{}, err
	}
	if r.o.CurrentKeyRef == "" {
		return Identity{}, errors.New("rotate: CurrentKeyRef is required before the first rotation")
	}
	id := Identity{CertificateFile: r.o.CurrentCertificateFile, KeyRef: r.o.CurrentKeyRef}
	if b, err := os.ReadFile(r.o.CurrentCertificateFile); err == nil {
		if c, err := fleetapi.ParseCert(string(b)); err == nil {
			id.CertificateID = certificateID(c.Raw)
		}
	}
	return id, nil
}

func (r *rotation) readProgress() (*progress, error) {
	var p progress
	valid := func() error {
		if p.KeyRef == "" {
			return errors.New("incomplete: no keyRef")
		}
		return nil
	}
	// Atomic writes cannot produce this: keep it aside and start over.
	found, _, err := statefile.ReadJSON(filepath.Dir(r.dir), filepath.Join(r.dir, progressFile), &p, valid,
		statefile.Then("the rotation starts over with a new key and certificate; the old identity stays in use until then"))
	if err != nil {
		return nil, fmt.Errorf("rotate: read progress: %w", err)
	}
	if !found {
		return nil, nil
	}
	return &p, nil
}

func (r *rotation) writeProgress(p *progress) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(r.dir, progressFile), b, 0o600); err != nil {
		return fmt.Errorf("rotate: save progress: %w", err)
	}
	return nil
}

// createCertificate makes the new key (replacing whatever an interrupted
// attempt left in its slot) and gets a certificate for it.
func (r *rotation) createCertificate(ctx context.Context, p *progress) error {
	signer, err := r.ks.Create(p.KeyRef)
	if err != nil {
		return fmt.Errorf("rotate: new key %s: %w", p.KeyRef, err)
	}
	if err := hook("key"); err != nil {
		return err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "AWS IoT Certificate"}}, signer)
	if err != nil {
		return fmt.Errorf("rotate: create CSR: %w", err)
	}
	req := struct {
		CSR string `json:"certificateSigningRequest"`
	}{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
	var resp struct {
		CertificateID  string `json:"certificateId"`
		CertificatePEM string `json:"certificatePem"`
		Token          string `json:"certificateOwnershipToken"`
	}
	if err := r.call(ctx, "CreateCertificateFromCsr", "$aws/certificates/create-from-csr", req, &resp); err != nil {
		return err
	}
	cert, err := fleetapi.ParseCert(resp.CertificatePEM)
	if err != nil || resp.Token == "" || len(resp.CertificateID) < 12 {
		return fmt.Errorf("rotate: CreateCertificateFromCsr: %w: no certificate or token (%v)", ErrInvalidResponse, err)
	}
	if !fleetapi.PublicKeysEqual(cert.PublicKey, signer.Public()) {
		return fmt.Errorf("rotate: CreateCertificateFromCsr: %w: the certificate is not for the new key", ErrInvalidResponse)
	}
	p.CertificateID, p.CertificatePEM, p.Token = resp.CertificateID, resp.CertificatePEM, resp.Token
	p.Template, p.Params = r.o.Template, maps.Clone(r.o.Params)
	if p.Params == nil {
		p.Params = map[string]string{}
	}
	if err := r.writeProgress(p); err != nil {
		return err
	}
	return hook("certificate")
}

func (r *rotation) registerThing(ctx context.Context, p *progress) error {
	req := struct {
		Token  string            `json:"certificateOwnershipToken"`
		Params map[string]string `json:"parameters"`
	}{p.Token, p.Params}
	var resp struct {
		ThingName string `json:"thingName"`
	}
	if err := r.call(ctx, "RegisterThing", "$aws/provisioning-templates/"+p.Template+"/provision", req, &resp); err != nil {
		return err
	}
	p.Registered = true
	if err := r.writeProgress(p); err != nil {
		return err
	}
	return hook("registered")
}

// verifyAndCommit connects with the new identity, then switches to it.
func (r *rotation) verifyAndCommit(ctx context.Context, p *progress) (Result, error) {
	signer, err := r.ks.Signer(p.KeyRef)
	if err != nil {
		return Result{}, fmt.Errorf("rotate: open new key %s: %w", p.KeyRef, err)
	}
	cert, err := fleetapi.ParseCert(p.CertificatePEM)
	if err != nil {
		return Result{}, fmt.Errorf("rotate: %w: saved certificate: %v", ErrInvalidResponse, err)
	}
	if err := r.o.Verify(ctx, tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: signer, Leaf: cert}); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if err := hook("verified"); err != nil {
		return Result{}, err
	}
	certFile := filepath.Join(r.dir, "device-"+p.CertificateID[:12]+".crt")
	if err := atomicfile.WriteFile(certFile, []byte(p.CertificatePEM), 0o644); err != nil {
		return Result{}, fmt.Errorf("rotate: save certificate: %w", err)
	}
	id := Identity{
		CertificateID:    p.CertificateID,
		CertificateFile:  certFile,
		KeyRef:           p.KeyRef,
		OldCertificateID: p.OldCertificateID,
		RotatedAt:        r.o.Now().UTC(),
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return Result{}, err
	}
	// The commit point.
	if err := atomicfile.WriteFile(filepath.Join(r.dir, rotatedFile), append(b, '\n'), 0o600); err != nil {
		return Result{}, fmt.Errorf("rotate: commit: %w", err)
	}
	if err := hook("committed"); err != nil {
		return Result{}, err
	}
	if err := os.Remove(filepath.Join(r.dir, progressFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Result{}, fmt.Errorf("rotate: drop progress: %w", err)
	}
	return Result{NewCertFile: certFile, NewKeyRef: p.KeyRef, NewCertificateID: p.CertificateID, OldCertificateID: p.OldCertificateID}, nil
}

// Pending reports whether a rotation has started and not committed.
func Pending(stateDir string) bool {
	_, err := os.Stat(filepath.Join(stateDir, dirName, progressFile))
	return err == nil
}
