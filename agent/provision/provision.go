package provision

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/iotagent/iotagent/agent/internal/fleetapi"
	"github.com/iotagent/iotagent/internal/atomicfile"
	"github.com/iotagent/iotagent/internal/statefile"
	"github.com/iotagent/iotagent/tpm"
)

// Transport is the MQTT connection made with the claim certificate.
// *transport.Client satisfies it.
type Transport = fleetapi.Transport

// KeyStore holds the device key for the CSR path (tpm.FileStore,
// tpm.TPMStore). Signer fails with tpm.ErrNoKey when there is no key yet;
// Generate creates it.
type KeyStore interface {
	Signer() (crypto.Signer, error)
	Generate() (crypto.Signer, error)
}

// SubscriptionWaiter is implemented by transports that can wait until the
// broker has acknowledged every registered subscription. Without it an
// answer can be lost to a subscription still on its way, and Provision
// sends the first request again sooner (after a quarter of
// ResponseTimeout).
type SubscriptionWaiter interface {
	WaitSubscribed(ctx context.Context) error
}

// Options configure Provision.
type Options struct {
	// Template is the provisioning template name (required).
	Template string
	// Params are RegisterThing's parameters (SerialNumber, usually from
	// SerialNumber(), plus any from the configuration).
	Params map[string]string
	// UseCSR selects CreateCertificateFromCsr with the key store's key (the
	// key never leaves it); otherwise CreateKeysAndCertificate, whose key is
	// saved as StateDir/identity/device.key.
	UseCSR bool
	// StateDir is the agent's state directory (required).
	StateDir string
	// Format is "json" (default) or "cbor".
	Format string
	// Claim identifies the claim certificate the connection is made with
	// (its SHA-256 fingerprint, say); progress.json records it, and a
	// progress.json of another claim is refused.
	Claim string
	// Restart discards an unfinished provisioning (progress.json) and
	// starts over with a new certificate; the one it held is never
	// activated, and the service deletes it when its token expires. A
	// finished one (identity.json) stays.
	Restart bool
	// ResponseTimeout bounds the wait for each answer (default 10 s); a
	// request with no answer is sent again, up to Attempts times (default 3).
	ResponseTimeout time.Duration
	Attempts        int
}

// Identity is the device identity fleet provisioning produced. It is
// persisted as StateDir/identity/identity.json.
type Identity struct {
	ThingName       string `json:"thingName"`
	CertificateID   string `json:"certificateId"`
	CertificateFile string `json:"certificateFile"` // PEM
	// KeyFile is the private key (PEM, 0600) for an identity made with
	// CreateKeysAndCertificate; "" means the key is the key store's.
	KeyFile             string            `json:"keyFile,omitempty"`
	DeviceConfiguration map[string]string `json:"deviceConfiguration,omitempty"`
	ProvisionedAt       time.Time         `json:"provisionedAt"`
}

// Certificate returns the identity's TLS certificate; signer is the key
// store's signer, used when KeyFile is "".
func (id Identity) Certificate(signer crypto.Signer) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(id.CertificateFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("identity certificate: %w", err)
	}
	if id.KeyFile != "" {
		keyPEM, err := os.ReadFile(id.KeyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("identity key: %w", err)
		}
		return tls.X509KeyPair(certPEM, keyPEM)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || signer == nil {
		return tls.Certificate{}, errors.New("identity certificate: no PEM certificate or no signer")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("identity certificate: %w", err)
	}
	if !fleetapi.PublicKeysEqual(leaf.PublicKey, signer.Public()) {
		return tls.Certificate{}, errors.New("identity certificate: does not match the key store's key")
	}
	return tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: signer, Leaf: leaf}, nil
}

var (
	// ErrNotProvisioned: the state dir holds no identity.
	ErrNotProvisioned = errors.New("provision: not provisioned")
	// ErrNoResponse: no answer came after every attempt.
	ErrNoResponse = fleetapi.ErrNoResponse
	// ErrInvalidResponse: an answer could not be used (bad payload, or a
	// certificate that does not match the key).
	ErrInvalidResponse = fleetapi.ErrInvalidResponse
	// ErrProgressMismatch: progress.json belongs to a provisioning with
	// another claim, template or parameters; see *MismatchError.
	ErrProgressMismatch = errors.New("provision: unfinished provisioning with other settings")
)

// MismatchError refuses to resume an unfinished provisioning whose
// claim, template or parameters differ from this call's: RegisterThing may
// already have been sent with the old ones, and sending other ones with the
// same certificate could make a second thing. Restart (iotagent provision
// --restart) or deleting the file starts over.
type MismatchError struct {
	File        string   // the progress file
	Differences []string // "template: iotsim-fleet in the file, factory-b now", ...
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("provision: %s is an unfinished provisioning with other settings (%s); RegisterThing may already have been sent with those. "+
		"Run again with the same settings to finish it, or start over with `iotagent provision --restart` (or delete %s): "+
		"the certificate it holds is never activated and expires unused", e.File, strings.Join(e.Differences, "; "), e.File)
}

func (e *MismatchError) Unwrap() error { return ErrProgressMismatch }

// RejectedError is a …/rejected answer; Retryable tells a rejection worth
// another try later (429, 5xx) from a permanent one.
type RejectedError = fleetapi.RejectedError

// File names under StateDir/identity.
const (
	dirName      = "identity"
	identityFile = "identity.json"
	progressFile = "progress.json"
	certFile     = "device.crt"
	keyFile      = "device.key"
)

// progress is the persisted state between steps (see the package doc).
type progress struct {
	API            string            `json:"api"` // "create" or "create-from-csr"
	CertificateID  string            `json:"certificateId"`
	CertificatePEM string            `json:"certificatePem"`
	PrivateKey     string            `json:"privateKey,omitempty"`
	Token          string            `json:"certificateOwnershipToken"`
	Claim          string            `json:"claim,omitempty"` // Options.Claim when the certificate was made
	Template       string            `json:"template,omitempty"`
	Params         map[string]string `json:"parameters,omitempty"` // set when RegisterThing is first sent
}

// Load returns the persisted identity, or an error wrapping
// ErrNotProvisioned. An identity.json that cannot be read or is incomplete
// is recovered (internal/statefile): moved aside, and rebuilt when it can
// be (see rebuild); otherwise Load returns ErrNotProvisioned, so that a
// device with a claim certificate provisions again.
func Load(stateDir string) (Identity, error) {
	path := filepath.Join(stateDir, dirName, identityFile)
	var id Identity
	valid := func() error {
		if id.ThingName == "" || id.CertificateFile == "" {
			return errors.New("incomplete: no thingName or certificateFile")
		}
		return nil
	}
	var rebuilt *Identity
	then := func(moved string) string {
		var how string
		rebuilt, how = rebuild(stateDir, moved)
		return how
	}
	found, ev, err := statefile.ReadJSON(stateDir, path, &id, valid, then)
	switch {
	case err != nil:
		return Identity{}, fmt.Errorf("load identity: %w", err)
	case found:
		return id, nil
	case ev == nil:
		return Identity{}, ErrNotProvisioned
	case rebuilt == nil:
		return Identity{}, fmt.Errorf("load identity: %s moved aside to %s (%s): %w", path, ev.MovedTo, ev.Reason, ErrNotProvisioned)
	}
	return *rebuilt, nil
}

// rebuild makes identity.json again after the damaged copy was moved to
// moved: from the certificate (and key) provisioning left in the identity
// dir and the thing name still legible in the damaged copy (a torn write
// keeps the start of the file, where thingName is). It returns nil and
// what to do when it cannot; the text is recorded either way.
func rebuild(stateDir, moved string) (*Identity, string) {
	dir := filepath.Join(stateDir, dirName)
	id := Identity{CertificateFile: filepath.Join(dir, certFile), ProvisionedAt: time.Now().UTC()}
	certPEM, err := os.ReadFile(id.CertificateFile)
	if err != nil {
		return nil, fmt.Sprintf("not rebuilt: no certificate (%v); the device provisions again if a claim certificate is configured, otherwise set thing_name, identity.cert and identity.key in the config", err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Sprintf("not rebuilt: %s holds no PEM certificate; the device provisions again if a claim certificate is configured", id.CertificateFile)
	}
	sum := sha256.Sum256(blk.Bytes)
	id.CertificateID = hex.EncodeToString(sum[:])
	if _, err := os.Stat(filepath.Join(dir, keyFile)); err == nil {
		id.KeyFile = filepath.Join(dir, keyFile)
	}
	var damaged []byte
	if moved != "" {
		damaged, _ = os.ReadFile(moved)
	}
	id.ThingName = legibleString(damaged, "thingName")
	if id.ThingName == "" {
		return nil, fmt.Sprintf("not rebuilt: the thing name is not legible in the damaged copy and is not in the certificate; "+
			"certificate %s (id %s) is still there: set thing_name in the config to the thing it is attached to "+
			"(aws iot list-principal-things --principal <its ARN>); or deactivate it (aws iot update-certificate "+
			"--certificate-id %s --new-status INACTIVE), and the device provisions again with its claim certificate",
			id.CertificateFile, id.CertificateID, id.CertificateID)
	}
	if got := legibleString(damaged, "certificateId"); got != "" && got != id.CertificateID {
		return nil, fmt.Sprintf("not rebuilt: the damaged copy names certificate %s but %s is %s; set thing_name, identity.cert and identity.key in the config, or delete %s to provision again",
			got, id.CertificateFile, id.CertificateID, dir)
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(dir, identityFile), append(b, '\n'), 0o600)
	}
	if err != nil {
		return nil, "not rebuilt: " + err.Error()
	}
	return &id, fmt.Sprintf("rebuilt from %s (certificate %s) and the thing name %q legible in the damaged copy", id.CertificateFile, id.CertificateID, id.ThingName)
}

// legibleString finds "key": "value" in damaged JSON and returns value
// when it is a plausible AWS IoT name or id (1 to 128 of a-z A-Z 0-9 : _ -).
func legibleString(b []byte, key string) string {
	i := bytes.Index(b, []byte(`"`+key+`"`))
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(b[i+len(key)+2:], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 1 || end > 128 {
		return ""
	}
	v := rest[1 : 1+end]
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-') {
			return ""
		}
	}
	return string(v)
}

// Provision returns the device identity, provisioning it first if the state
// dir has none: create a certificate, RegisterThing, persist. t must be
// connected with the claim certificate. It resumes whatever an earlier,
// interrupted call left (see the package doc), and it never has two
// certificates in flight. Errors name the step; a rejection is a
// *RejectedError.
func Provision(ctx context.Context, t Transport, ks KeyStore, o Options) (Identity, error) {
	if id, err := Load(o.StateDir); err == nil {
		_ = os.Remove(filepath.Join(o.StateDir, dirName, progressFile))
		return id, nil
	} else if !errors.Is(err, ErrNotProvisioned) {
		return Identity{}, err
	}
	if o.Template == "" || o.StateDir == "" {
		return Identity{}, errors.New("provision: Template and StateDir are required")
	}
	if o.Format == "" {
		o.Format = "json"
	}
	if o.Format != "json" && o.Format != "cbor" {
		return Identity{}, fmt.Errorf("provision: format %q: want json or cbor", o.Format)
	}
	if o.ResponseTimeout <= 0 {
		o.ResponseTimeout = 10 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.UseCSR && ks == nil {
		return Identity{}, errors.New("provision: the CSR path needs a key store")
	}
	dir := filepath.Join(o.StateDir, dirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Identity{}, fmt.Errorf("provision: state dir: %w", err)
	}
	p := &client{t: t, o: o, dir: dir}
	if o.Restart {
		if err := os.Remove(filepath.Join(dir, progressFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Identity{}, fmt.Errorf("provision: restart: %w", err)
		}
	}
	prog, err := p.readProgress()
	if err != nil {
		return Identity{}, err
	}
	if err := p.checkProgress(prog); err != nil {
		return Identity{}, err
	}
	// At most two rounds: a token that expired (or that a restarted iotsim
	// forgot) costs one new certificate.
	for round := 0; ; round++ {
		if prog == nil {
			if prog, err = p.createCertificate(ctx, ks); err != nil {
				return Identity{}, err
			}
		}
		if prog.Params == nil {
			prog.Template, prog.Params = o.Template, maps.Clone(o.Params)
			if prog.Params == nil {
				prog.Params = map[string]string{}
			}
			if err := p.writeProgress(prog); err != nil {
				return Identity{}, err
			}
		}
		resp, err := p.registerThing(ctx, prog)
		var rej *RejectedError
		if errors.As(err, &rej) && rej.StatusCode == 400 && rej.ErrorCode == "InvalidCertificateOwnershipToken" && round == 0 {
			if err := os.Remove(filepath.Join(dir, progressFile)); err != nil {
				return Identity{}, fmt.Errorf("provision: drop expired certificate: %w", err)
			}
			prog = nil
			continue
		}
		if errors.As(err, &rej) && !rej.Retryable() || errors.Is(err, fleetapi.ErrNotSent) {
			// Nothing was registered (refused, or never sent: a claim
			// policy that does not allow the template closes the
			// connection at the SUBSCRIBE): the next start may use other
			// parameters (a fixed configuration) with the same certificate.
			prog.Template, prog.Params = "", nil
			if werr := p.writeProgress(prog); werr != nil {
				return Identity{}, errors.Join(err, werr)
			}
		}
		if err != nil {
			return Identity{}, err
		}
		return p.commit(prog, resp)
	}
}

type client struct {
	t   Transport
	o   Options
	dir string
}

func (p *client) readProgress() (*progress, error) {
	var prog progress
	valid := func() error {
		if prog.Token == "" || prog.CertificatePEM == "" {
			return errors.New("incomplete: no certificate or ownership token")
		}
		return nil
	}
	// A file that atomic writes cannot produce: keep it aside and start
	// over (a certificate it named stays PENDING_ACTIVATION in AWS IoT).
	found, _, err := statefile.ReadJSON(filepath.Dir(p.dir), filepath.Join(p.dir, progressFile), &prog, valid,
		statefile.Then("provisioning starts over with a new certificate"))
	if err != nil {
		return nil, fmt.Errorf("provision: read progress: %w", err)
	}
	if !found {
		return nil, nil
	}
	return &prog, nil
}

// checkProgress refuses a progress.json made with another claim, or whose
// RegisterThing may have been sent with another template or parameters.
func (p *client) checkProgress(prog *progress) error {
	if prog == nil {
		return nil
	}
	var diffs []string
	if prog.Claim != "" && p.o.Claim != "" && prog.Claim != p.o.Claim {
		diffs = append(diffs, fmt.Sprintf("claim certificate: %.16s… in the file, %.16s… now", prog.Claim, p.o.Claim))
	}
	if prog.Params != nil {
		if prog.Template != p.o.Template {
			diffs = append(diffs, fmt.Sprintf("template: %q in the file, %q now", prog.Template, p.o.Template))
		}
		union := maps.Clone(prog.Params)
		maps.Copy(union, p.o.Params)
		for _, k := range slices.Sorted(maps.Keys(union)) {
			old, had := prog.Params[k]
			now, has := p.o.Params[k]
			if old != now || had != has {
				diffs = append(diffs, fmt.Sprintf("parameter %s: %s in the file, %s now", k, quoteOrNone(old, had), quoteOrNone(now, has)))
			}
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return &MismatchError{File: filepath.Join(p.dir, progressFile), Differences: diffs}
}

func quoteOrNone(s string, ok bool) string {
	if !ok {
		return "none"
	}
	return strconv.Quote(s)
}

func (p *client) writeProgress(prog *progress) error {
	b, err := json.Marshal(prog)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(p.dir, progressFile), b, 0o600); err != nil {
		return fmt.Errorf("provision: save progress: %w", err)
	}
	return nil
}

type createResponse struct {
	CertificateID  string `json:"certificateId" cbor:"certificateId"`
	CertificatePEM string `json:"certificatePem" cbor:"certificatePem"`
	PrivateKey     string `json:"privateKey" cbor:"privateKey"`
	Token          string `json:"certificateOwnershipToken" cbor:"certificateOwnershipToken"`
}

type registerResponse struct {
	DeviceConfiguration map[string]string `json:"deviceConfiguration" cbor:"deviceConfiguration"`
	ThingName           string            `json:"thingName" cbor:"thingName"`
}

// createCertificate runs CreateCertificateFromCsr or
// CreateKeysAndCertificate and persists the result.
func (p *client) createCertificate(ctx context.Context, ks KeyStore) (*progress, error) {
	prog := &progress{API: "create", Claim: p.o.Claim}
	var req any = struct{}{}
	var signer crypto.Signer
	if p.o.UseCSR {
		var err error
		if signer, err = keyStoreSigner(ks); err != nil {
			return nil, err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "AWS IoT Certificate"}}, signer)
		if err != nil {
			return nil, fmt.Errorf("provision: create CSR: %w", err)
		}
		prog.API = "create-from-csr"
		req = struct {
			CSR string `json:"certificateSigningRequest" cbor:"certificateSigningRequest"`
		}{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
	}
	apiName := map[string]string{"create": "CreateKeysAndCertificate", "create-from-csr": "CreateCertificateFromCsr"}[prog.API]
	var resp createResponse
	if err := p.call(ctx, apiName, "$aws/certificates/"+prog.API, req, &resp); err != nil {
		return nil, err
	}
	if resp.Token == "" || resp.CertificateID == "" {
		return nil, fmt.Errorf("provision: %s: %w: no certificate or token", apiName, ErrInvalidResponse)
	}
	cert, err := fleetapi.ParseCert(resp.CertificatePEM)
	if err != nil {
		return nil, fmt.Errorf("provision: %s: %w: %v", apiName, ErrInvalidResponse, err)
	}
	if p.o.UseCSR {
		if !fleetapi.PublicKeysEqual(cert.PublicKey, signer.Public()) {
			return nil, fmt.Errorf("provision: %s: %w: the certificate is not for our key", apiName, ErrInvalidResponse)
		}
	} else if _, err := tls.X509KeyPair([]byte(resp.CertificatePEM), []byte(resp.PrivateKey)); err != nil {
		return nil, fmt.Errorf("provision: %s: %w: key and certificate: %v", apiName, ErrInvalidResponse, err)
	}
	prog.CertificateID, prog.CertificatePEM, prog.Token = resp.CertificateID, resp.CertificatePEM, resp.Token
	if !p.o.UseCSR {
		prog.PrivateKey = resp.PrivateKey
	}
	if err := p.writeProgress(prog); err != nil {
		return nil, err
	}
	return prog, nil
}

// keyStoreSigner returns the key store's key, generating it if there is none.
func keyStoreSigner(ks KeyStore) (crypto.Signer, error) {
	s, err := ks.Signer()
	if errors.Is(err, tpm.ErrNoKey) {
		s, err = ks.Generate()
		if errors.Is(err, tpm.ErrKeyExists) { // a concurrent Generate won
			s, err = ks.Signer()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("provision: device key: %w", err)
	}
	return s, nil
}

func (p *client) registerThing(ctx context.Context, prog *progress) (registerResponse, error) {
	req := struct {
		Token  string            `json:"certificateOwnershipToken" cbor:"certificateOwnershipToken"`
		Params map[string]string `json:"parameters" cbor:"parameters"`
	}{prog.Token, prog.Params}
	var resp registerResponse
	if err := p.call(ctx, "RegisterThing", "$aws/provisioning-templates/"+prog.Template+"/provision", req, &resp); err != nil {
		return registerResponse{}, err
	}
	if resp.ThingName == "" {
		return registerResponse{}, fmt.Errorf("provision: RegisterThing: %w: the template made no thing", ErrInvalidResponse)
	}
	return resp, nil
}

// commit writes the certificate (and key), then identity.json (the commit
// point), then drops the progress file.
func (p *client) commit(prog *progress, resp registerResponse) (Identity, error) {
	id := Identity{
		ThingName:           resp.ThingName,
		CertificateID:       prog.CertificateID,
		CertificateFile:     filepath.Join(p.dir, certFile),
		DeviceConfiguration: resp.DeviceConfiguration,
		ProvisionedAt:       time.Now().UTC(),
	}
	if err := atomicfile.WriteFile(id.CertificateFile, []byte(prog.CertificatePEM), 0o644); err != nil {
		return Identity{}, fmt.Errorf("provision: save certificate: %w", err)
	}
	if prog.PrivateKey != "" {
		id.KeyFile = filepath.Join(p.dir, keyFile)
		if err := atomicfile.WriteFile(id.KeyFile, []byte(prog.PrivateKey), 0o600); err != nil {
			return Identity{}, fmt.Errorf("provision: save key: %w", err)
		}
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return Identity{}, err
	}
	if err := atomicfile.WriteFile(filepath.Join(p.dir, identityFile), append(b, '\n'), 0o600); err != nil {
		return Identity{}, fmt.Errorf("provision: save identity: %w", err)
	}
	if testHookAfterIdentity != nil {
		if err := testHookAfterIdentity(); err != nil {
			return Identity{}, err
		}
	}
	if err := os.Remove(filepath.Join(p.dir, progressFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Identity{}, fmt.Errorf("provision: drop progress: %w", err)
	}
	return id, nil
}

// testHookAfterIdentity runs between writing identity.json and removing
// the progress file; an error stops there, as a crash would. Nil in
// production.
var testHookAfterIdentity func() error

// call sends one fleet provisioning request and waits for its answer.
func (p *client) call(ctx context.Context, apiName, base string, req, resp any) error {
	o := fleetapi.Options{Format: p.o.Format, ResponseTimeout: p.o.ResponseTimeout, Attempts: p.o.Attempts}
	if err := fleetapi.Call(ctx, p.t, o, apiName, base, req, resp); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}
