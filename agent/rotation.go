package agent

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/internal/fleetapi"
	"github.com/iotagent/iotagent/agent/provision"
	"github.com/iotagent/iotagent/agent/rotate"
	"github.com/iotagent/iotagent/tpm"
)

// rotationCheckEvery is how often the agent looks at its certificate's
// expiry while it runs.
const rotationCheckEvery = 12 * time.Hour

// adoptRotated points cfg at the identity of the last committed rotation.
func adoptRotated(cfg *config.Config) error {
	id, err := rotate.Load(cfg.StateDir)
	if errors.Is(err, rotate.ErrNotRotated) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg.Identity.Cert = id.CertificateFile
	if h, err := rotate.ParseTPMRef(id.KeyRef); err == nil {
		cfg.Identity.KeyStore, cfg.Identity.TPM.Handle = "tpm", config.TPMHandle(h)
		return nil
	}
	path, ok := strings.CutPrefix(id.KeyRef, "file:")
	if !ok {
		return fmt.Errorf("rotated identity: key reference %q", id.KeyRef)
	}
	cfg.Identity.KeyStore, cfg.Identity.Key = "file", path
	return nil
}

// keyRef names the key the agent uses now, as agent/rotate does.
func keyRef(cfg config.Config) string {
	if cfg.Identity.KeyStore == "tpm" {
		return rotate.TPMRef(uint32(cfg.Identity.TPM.Handle))
	}
	return rotate.FileRef(cfg.Identity.Key)
}

// rotationLoop rotates the certificate when it comes within rotation.days
// of expiry, and finishes a rotation a crash interrupted. It checks once
// the shadow is synced (the connection works) and then twice a day.
func (a *Agent) rotationLoop(ctx context.Context) {
	if a.cfg.Rotation.Days <= 0 && !rotate.Pending(a.cfg.StateDir) {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-a.synced:
	}
	t := time.NewTicker(rotationCheckEvery)
	defer t.Stop()
	for {
		a.mu.Lock()
		leaf := a.leaf
		a.mu.Unlock()
		if rotate.Pending(a.cfg.StateDir) || (a.cfg.Rotation.Days > 0 && rotate.Due(leaf, a.now(), a.cfg.Rotation.Days)) {
			if _, err := a.Rotate(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("certificate rotation failed; trying again later", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Rotate makes a new key and certificate over the current connection, as
// `iotagent cert rotate` asks through the local API and as rotationLoop
// does near expiry. The old identity stays in use until the new
// certificate has connected; then the next connection uses the new one.
// The result names the old certificate, to be deactivated.
func (a *Agent) Rotate(ctx context.Context) (rotate.Result, error) {
	if !a.rotating.TryLock() {
		return rotate.Result{}, errors.New("a rotation is already running")
	}
	defer a.rotating.Unlock()
	if a.tr == nil || !a.tr.Connected() {
		return rotate.Result{}, errors.New("not connected: rotation needs the current connection")
	}
	tmpl := a.cfg.RotationTemplate()
	if tmpl == "" {
		return rotate.Result{}, errors.New("no template: set rotation.template (or provisioning.template) to the one that registered this thing")
	}
	params := map[string]string{"SerialNumber": a.cfg.ThingName}
	if serial, err := provision.SerialNumber(); err == nil && a.cfg.Provisioning.Enabled() {
		params["SerialNumber"] = serial
	}
	maps.Copy(params, a.cfg.Provisioning.Params)

	var keys rotate.KeyStore = rotate.FileKeys{Dir: a.cfg.StateDir + "/identity"}
	if a.cfg.Identity.KeyStore == "tpm" {
		tk := &rotate.TPMKeys{
			Handles: [2]uint32{uint32(a.cfg.Identity.TPM.Handle), uint32(a.cfg.Rotation.TPMSpareHandle)},
			Open: func(h uint32) (rotate.TPMSlot, error) {
				return tpm.OpenTPM(tpm.TPMConfig{Device: a.cfg.Identity.TPM.Device, Handle: h})
			},
		}
		// Signers handed out by tk live as long as it does: it stays open
		// for the rest of the run when the rotation succeeds.
		keys = tk
		defer func() {
			if a.leafKeys != tk {
				tk.Close()
			}
		}()
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := rotate.Rotate(rctx, a.tr, keys, rotate.Options{
		StateDir:               a.cfg.StateDir,
		Template:               tmpl,
		Params:                 params,
		CurrentCertificateFile: a.cfg.Identity.Cert,
		CurrentKeyRef:          keyRef(a.cfg),
		Verify: rotate.DialVerifier(rotate.DialOptions{
			Addr:       net.JoinHostPort(a.cfg.MQTT.Endpoint, strconv.Itoa(a.cfg.MQTT.Port)),
			ServerName: a.cfg.MQTT.TLSServerName(),
			RootCAs:    a.roots,
			ALPN:       a.cfg.MQTT.ALPN,
			ClientID:   a.cfg.ThingName,
		}),
		Now: a.now,
	})
	if err != nil {
		return res, err
	}
	signer, err := keys.Signer(res.NewKeyRef)
	if err != nil {
		return res, fmt.Errorf("rotated key: %w", err)
	}
	cert, err := tlsCertificate(res.NewCertFile, signer)
	if err != nil {
		return res, err
	}
	a.tr.SetCertificate(cert)
	if tk, ok := keys.(*rotate.TPMKeys); ok {
		a.leafKeys = tk
	}
	a.mu.Lock()
	a.leaf = cert.Leaf
	a.st.OldCertificateID = res.OldCertificateID
	a.mu.Unlock()
	_ = adoptRotated(&a.cfg)
	signal(a.dirty)
	a.log.Warn("certificate rotated: deactivate the old one", "new_certificate_id", res.NewCertificateID,
		"old_certificate_id", res.OldCertificateID)
	return res, nil
}

// tlsCertificate reads a PEM certificate chain and pairs it with signer,
// which must hold the leaf's key.
func tlsCertificate(path string, signer crypto.Signer) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(path)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("device certificate: %w", err)
	}
	var chain [][]byte
	for rest := certPEM; ; {
		var der []byte
		if der, rest = nextCertificate(rest); der == nil {
			break
		}
		chain = append(chain, der)
	}
	if len(chain) == 0 {
		return tls.Certificate{}, fmt.Errorf("device certificate %s: no PEM certificate in it", path)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("device certificate %s: %w", path, err)
	}
	if !fleetapi.PublicKeysEqual(leaf.PublicKey, signer.Public()) {
		return tls.Certificate{}, fmt.Errorf("device key does not match certificate %s", path)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: signer, Leaf: leaf}, nil
}

func certificateID(leaf *x509.Certificate) string {
	if leaf == nil {
		return ""
	}
	sum := sha256.Sum256(leaf.Raw)
	return hex.EncodeToString(sum[:])
}
