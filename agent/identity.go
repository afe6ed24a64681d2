package agent

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"

	"github.com/iotagent/iotagent/tpm"
)

// openIdentity opens the key store and the device identity: it provisions
// the device first when it has none and a claim certificate is configured,
// and follows a committed certificate rotation. On success the caller
// closes the key store once nothing signs any more.
func (a *Agent) openIdentity(ctx context.Context) (tpm.KeyStore, tls.Certificate, error) {
	id := a.cfg.Identity
	ks, err := tpm.OpenKeyStore(id.KeyStore, id.Key, tpm.TPMConfig{Device: id.TPM.Device, Handle: uint32(id.TPM.Handle)})
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("key store: %w", err)
	}
	fail := func(err error) (tpm.KeyStore, tls.Certificate, error) {
		ks.Close()
		return nil, tls.Certificate{}, err
	}
	if a.roots, err = LoadRoots(a.cfg.MQTT.RootCA); err != nil {
		return fail(err)
	}
	if err := a.ensureIdentity(ctx, ks, a.roots); err != nil {
		return fail(fmt.Errorf("provisioning: %w", err))
	}
	if err := adoptRotated(&a.cfg); err != nil {
		return fail(err)
	}
	if now := a.cfg.Identity; now.KeyStore != id.KeyStore || now.Key != id.Key || now.TPM != id.TPM {
		// provisioning made a key file, or a rotation moved the key
		ks.Close()
		if ks, err = tpm.OpenKeyStore(now.KeyStore, now.Key, tpm.TPMConfig{Device: now.TPM.Device, Handle: uint32(now.TPM.Handle)}); err != nil {
			return nil, tls.Certificate{}, fmt.Errorf("key store: %w", err)
		}
	}
	signer, err := ks.Signer()
	if err != nil {
		return fail(fmt.Errorf("device key: %w", err))
	}
	cert, err := tlsCertificate(a.cfg.Identity.Cert, signer)
	if err != nil {
		return fail(fmt.Errorf("%w (key store %s)", err, ks))
	}
	a.leaf = cert.Leaf
	a.log.Info("identity loaded", "key_store", fmt.Sprint(ks), "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	return ks, cert, nil
}

// nextCertificate returns the DER of the first CERTIFICATE block in data
// and the rest, or nil when there is none.
func nextCertificate(data []byte) (der, rest []byte) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, nil
		}
		if b.Type == "CERTIFICATE" {
			return b.Bytes, data
		}
	}
}
