package broker

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
)

// errNoClientCert: the handshake carried no client certificate.
var errNoClientCert = errors.New("broker: no client certificate")

// caCache keeps parsed registered CA certificates by id, so that a
// handshake parses none of them again.
type caCache struct{ m sync.Map } // id -> *x509.Certificate

func (c *caCache) get(ca registry.CACertificate) (*x509.Certificate, error) {
	if v, ok := c.m.Load(ca.ID); ok {
		return v.(*x509.Certificate), nil
	}
	cert, err := pki.ParseCertificatePEM([]byte(ca.PEM))
	if err != nil {
		return nil, err
	}
	c.m.Store(ca.ID, cert)
	return cert, nil
}

// verifyClient is the TLS layer's client certificate check (the
// tls.Config's VerifyPeerCertificate, with RequireAnyClientCert): the
// chain must lead to Options.ClientCAs or to a CA certificate that is
// registered and ACTIVE right now (RegisterCACertificate), so a CA
// registered at run time is trusted without a restart and one deactivated
// is no longer. Certificates the device sends after its own are used as
// intermediates only. Whether the certificate itself is registered is
// decided at CONNECT (hook.OnConnect), where JITR/JITP happen.
func (b *Broker) verifyClient(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errNoClientCert
	}
	cas, err := b.o.Registry.ListCACertificates()
	if err != nil {
		return fmt.Errorf("client certificate: list registered CAs: %w", err)
	}
	key := verifyKey(raw, cas)
	now := b.now()
	if b.verified.ok(key, now) {
		return nil
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("client certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	roots := b.o.ClientCAs.Clone()
	for _, ca := range cas {
		if ca.Status != registry.StatusActive {
			continue
		}
		if c, err := b.cas.get(ca); err == nil {
			roots.AddCert(c)
		}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	b.verified.add(key, chains[0])
	return nil
}

// maxVerified bounds the verification cache; past it, it starts over.
const maxVerified = 4096

// verifyCache remembers the client certificate chains verifyClient
// accepted, so that a claim certificate that connects once per device is
// verified (an ECDSA verification per certificate of its chain) once. The
// key covers everything the verification depends on but the time: the
// certificates the client sent and the registered CAs that are ACTIVE
// (Options.ClientCAs does not change); the value is when the chain found
// is valid, so a cached success stands exactly when a new verification
// would find that chain again.
type verifyCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]validity
}

type validity struct{ notBefore, notAfter time.Time }

func (c *verifyCache) ok(key [sha256.Size]byte, now time.Time) bool {
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	return ok && !now.Before(v.notBefore) && !now.After(v.notAfter)
}

func (c *verifyCache) add(key [sha256.Size]byte, chain []*x509.Certificate) {
	var v validity
	for i, cert := range chain {
		if i == 0 || cert.NotBefore.After(v.notBefore) {
			v.notBefore = cert.NotBefore
		}
		if i == 0 || cert.NotAfter.Before(v.notAfter) {
			v.notAfter = cert.NotAfter
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxVerified {
		c.m = make(map[[sha256.Size]byte]validity)
	}
	c.m[key] = v
}

// verifyKey digests the certificates a client sent and the ids of the
// ACTIVE registered CAs.
func verifyKey(raw [][]byte, cas []registry.CACertificate) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	for _, der := range raw {
		binary.BigEndian.PutUint32(n[:], uint32(len(der)))
		h.Write(n[:])
		h.Write(der)
	}
	h.Write([]byte{0})
	for _, ca := range cas {
		if ca.Status == registry.StatusActive {
			h.Write([]byte(ca.ID))
			h.Write([]byte{0})
		}
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}
