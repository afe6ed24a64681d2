package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names inside the directories given to LoadOrCreateCA and
// ServerCertificates.
const (
	CACertFile        = "ca.pem"
	CAKeyFile         = "ca.key"
	ServerRSACertFile = "server-rsa.pem"
	ServerRSAKeyFile  = "server-rsa.key"
	ServerECCertFile  = "server-ecdsa.pem"
	ServerECKeyFile   = "server-ecdsa.key"
)

// Validity periods.
const (
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 2 * 365 * 24 * time.Hour
	// serverRenewBefore: a server certificate that expires sooner than this
	// is regenerated.
	serverRenewBefore = 30 * 24 * time.Hour
	// backdate covers small clock differences between simulator and device.
	backdate = time.Hour
)

// AWSNotAfter is the expiry AWS gives the certificates it issues
// (CreateKeysAndCertificate, CreateCertificateFromCsr): 2049-12-31T23:59:59Z.
var AWSNotAfter = time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)

var (
	// ErrUnsupportedKey: the public or private key type is not RSA, ECDSA or Ed25519.
	ErrUnsupportedKey = errors.New("pki: unsupported key type")
	// ErrBadPEM: the input is not the expected PEM block.
	ErrBadPEM = errors.New("pki: malformed PEM")
	// ErrIncompleteCA: only one of ca.pem and ca.key exists, or they do not match.
	ErrIncompleteCA = errors.New("pki: CA certificate and key are incomplete or do not match")
	// ErrInvalid: a bad argument (no hosts, an expiry in the past).
	ErrInvalid = errors.New("pki: invalid argument")
)

// CA is a certificate authority: its certificate, its signing key and the
// certificate's PEM encoding (what devices configure as their root CA).
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	// Now is the clock used for NotBefore and expiry checks; nil means time.Now.
	Now func() time.Time
}

func (ca *CA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

// CertificateID returns AWS's id for a certificate: the lowercase hex
// SHA-256 of its DER encoding (64 characters).
func CertificateID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// LoadOrCreateCA loads dir/ca.pem and dir/ca.key, or, if neither exists,
// creates an ECDSA P-256 CA valid for 10 years and writes them (ca.pem 0644,
// ca.key 0600). If only one of the two files exists, it returns
// ErrIncompleteCA rather than overwrite anything.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load CA from %s: %w", dir, err)
		}
		return ca, nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		// Create below.
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, fmt.Errorf("read CA certificate: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, fmt.Errorf("read CA key: %w", keyErr)
	default:
		return nil, fmt.Errorf("load CA from %s: %w", dir, ErrIncompleteCA)
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create CA dir: %w", err)
	}
	ca, keyPEM, err := newCA(time.Now())
	if err != nil {
		return nil, err
	}
	// Key first: a crash between the two writes leaves only ca.key, which
	// LoadOrCreateCA reports instead of silently replacing.
	if err := WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write CA key: %w", err)
	}
	if err := WriteFileAtomic(certPath, ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write CA certificate: %w", err)
	}
	return ca, nil
}

func newCA(now time.Time) (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "iotsim Root CA", Organization: []string{"iotsim"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	keyPEM, err := MarshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemCert(der)}, keyPEM, nil
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate is not a CA: %w", ErrIncompleteCA)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("key does not match certificate: %w", ErrIncompleteCA)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemCert(cert.Raw)}, nil
}

// Pool returns a certificate pool holding only the CA certificate, for
// tls.Config.ClientCAs or RootCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ServerCertificates returns two server certificates for hosts (IP literals
// and DNS names), an ECDSA P-256 and an RSA 2048 one, as AWS serves both.
// ECDSA comes first: crypto/tls offers the first that the client accepts,
// and an ECDSA handshake costs a small device far less than an RSA one. They
// are persisted in dir and reused on the next call unless the hosts differ,
// they were not signed by this CA, or they expire within 30 days.
func (ca *CA) ServerCertificates(dir string, hosts []string) ([]tls.Certificate, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("server certificates: no hosts: %w", ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create server certificate dir: %w", err)
	}
	out := make([]tls.Certificate, 0, 2)
	for _, kind := range []struct {
		name, certFile, keyFile string
		gen                     func() (crypto.Signer, error)
	}{
		{"ecdsa", ServerECCertFile, ServerECKeyFile, func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }},
		{"rsa", ServerRSACertFile, ServerRSAKeyFile, func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }},
	} {
		certPath, keyPath := filepath.Join(dir, kind.certFile), filepath.Join(dir, kind.keyFile)
		if c, ok := ca.loadServerCert(certPath, keyPath, hosts); ok {
			out = append(out, c)
			continue
		}
		key, err := kind.gen()
		if err != nil {
			return nil, fmt.Errorf("generate %s server key: %w", kind.name, err)
		}
		c, err := ca.issueServer(key, hosts)
		if err != nil {
			return nil, fmt.Errorf("issue %s server certificate: %w", kind.name, err)
		}
		keyPEM, err := MarshalKeyPEM(key)
		if err != nil {
			return nil, err
		}
		if err := WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("write %s server key: %w", kind.name, err)
		}
		if err := WriteFileAtomic(certPath, pemCert(c.Leaf.Raw), 0o644); err != nil {
			return nil, fmt.Errorf("write %s server certificate: %w", kind.name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// loadServerCert returns the stored certificate if it is still good for hosts.
func (ca *CA) loadServerCert(certPath, keyPath string, hosts []string) (tls.Certificate, bool) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, false
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, false
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil || c.Leaf == nil {
		return tls.Certificate{}, false
	}
	leaf := c.Leaf
	if leaf.CheckSignatureFrom(ca.Cert) != nil {
		return tls.Certificate{}, false
	}
	if ca.now().Add(serverRenewBefore).After(leaf.NotAfter) {
		return tls.Certificate{}, false
	}
	ips, dns := splitHosts(hosts)
	if !sameIPs(ips, leaf.IPAddresses) || !sameStrings(dns, leaf.DNSNames) {
		return tls.Certificate{}, false
	}
	return c, true
}

func (ca *CA) issueServer(key crypto.Signer, hosts []string) (tls.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	ips, dns := splitHosts(hosts)
	now := ca.now()
	usage := x509.KeyUsageDigitalSignature
	if _, ok := key.Public().(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	cn := hosts[0]
	if len(dns) > 0 {
		cn = dns[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"iotsim"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(serverValidity),
		KeyUsage:     usage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueDevice signs a client-authentication certificate for pub with the
// given subject, valid from now (backdated an hour) until notAfter, and
// returns its DER encoding.
func (ca *CA) IssueDevice(pub crypto.PublicKey, subject pkix.Name, notAfter time.Time) ([]byte, error) {
	usage := x509.KeyUsageDigitalSignature
	switch pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		usage |= x509.KeyUsageKeyEncipherment
	default:
		return nil, fmt.Errorf("issue device certificate: %T: %w", pub, ErrUnsupportedKey)
	}
	now := ca.now()
	if !notAfter.After(now) {
		return nil, fmt.Errorf("issue device certificate: notAfter %s is not in the future: %w", notAfter.Format(time.RFC3339), ErrInvalid)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     usage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		SubjectKeyId: ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue device certificate: %w", err)
	}
	return der, nil
}

// NewKeysAndCertificate makes an ECDSA P-256 key pair and a device
// certificate with the subject CN=commonName ("AWS IoT Certificate" when
// empty), expiring 2049-12-31T23:59:59Z like AWS's, and returns the
// certificate PEM and the private key as PKCS#8 PEM. It is for iotsim's own
// identities (the claim certificate, `iotsim thing create`, tests), where a
// P-256 key is made in microseconds; AWS's CreateKeysAndCertificate is
// CreateKeysAndCertificate.
func (ca *CA) NewKeysAndCertificate(commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate device key: %w", err)
	}
	keyPEM, err = MarshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return ca.deviceCertificate(key, commonName, keyPEM)
}

// CreateKeysAndCertificate is AWS's CreateKeysAndCertificate (REST and
// fleet provisioning): an RSA 2048 key pair, returned as a PKCS#1
// "RSA PRIVATE KEY" PEM as AWS returns it, and a device certificate as
// NewKeysAndCertificate makes.
func (ca *CA) CreateKeysAndCertificate(commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generate device key: %w", err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return ca.deviceCertificate(key, commonName, keyPEM)
}

func (ca *CA) deviceCertificate(key crypto.Signer, commonName string, keyPEM []byte) (certPEM, _ []byte, err error) {
	if commonName == "" {
		commonName = "AWS IoT Certificate"
	}
	der, err := ca.IssueDevice(key.Public(), pkix.Name{CommonName: commonName}, AWSNotAfter)
	if err != nil {
		return nil, nil, err
	}
	return pemCert(der), keyPEM, nil
}

// ParseCertificatePEM parses the first CERTIFICATE block of b.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("no CERTIFICATE block: %w", ErrBadPEM)
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w: %w", ErrBadPEM, err)
		}
		return cert, nil
	}
}

// ParseKeyPEM parses a private key in PEM: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("no private key block: %w", ErrBadPEM)
		}
		var key any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w: %w", blk.Type, ErrBadPEM, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parse %s: %T: %w", blk.Type, key, ErrUnsupportedKey)
		}
		return s, nil
	}
}

// MarshalKeyPEM encodes a private key as PKCS#8 PEM ("PRIVATE KEY").
func MarshalKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteFileAtomic writes data to path with mode perm through a temporary
// file in the same directory, fsynced and renamed over path, so readers see
// the old or the new content and never a partial file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod temp file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write temp file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync temp file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close temp file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename temp file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w: %w", ErrUnsupportedKey, err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ad, err1 := x509.MarshalPKIXPublicKey(a)
	bd, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(ad, bd)
}

func splitHosts(hosts []string) (ips []net.IP, dns []string) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			dns = append(dns, h)
		}
	}
	return ips, dns
}

func sameIPs(a, b []net.IP) bool {
	as := make([]string, len(a))
	for i, ip := range a {
		as[i] = ip.String()
	}
	bs := make([]string, len(b))
	for i, ip := range b {
		bs[i] = ip.String()
	}
	return sameStrings(as, bs)
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
