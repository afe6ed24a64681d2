package broker

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

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
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("client certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	roots := b.o.ClientCAs.Clone()
	cas, err := b.o.Registry.ListCACertificates()
	if err != nil {
		return fmt.Errorf("client certificate: list registered CAs: %w", err)
	}
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
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   b.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	return nil
}
