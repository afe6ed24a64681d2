package agent

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/provision"
	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/tpm"
)

// LoadRoots reads the root CA bundle the agent trusts for the endpoint.
func LoadRoots(path string) (*x509.CertPool, error) {
	caPEM, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("root CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("root CA %s: no PEM certificate in it", path)
	}
	return roots, nil
}

// ensureIdentity adopts the identity provisioned into the state dir, if
// any, and otherwise provisions the device when fleet provisioning is
// configured, retrying with backoff until it
// succeeds or ctx ends: a device on the shelf keeps trying rather than
// crash-looping. It adopts the identity into a.cfg (thing name,
// certificate and, for CreateKeysAndCertificate, the key file).
func (a *Agent) ensureIdentity(ctx context.Context, ks tpm.KeyStore, roots *x509.CertPool) error {
	// An identity provisioned into the state dir is the device's, whether
	// or not this config names a claim: the line provisions with flags and
	// runs the agent with the plain config and the same --state-dir.
	id, err := provision.Load(a.cfg.StateDir)
	switch {
	case err == nil:
		adopt(&a.cfg, id)
		return nil
	case !errors.Is(err, provision.ErrNotProvisioned):
		return err
	case !a.cfg.Provisioning.Enabled():
		return nil
	}
	a.refreshRecoveries(false) // a damaged identity.json: say so before provisioning
	if _, err := os.Stat(a.cfg.Identity.Cert); err == nil && a.cfg.ThingName != "" {
		return nil // an identity put there by hand or by the line: keep it
	}
	// No thing name to go with a certificate there (identity.json was
	// damaged and could not be rebuilt: see internal/statefile): provision
	// again, which names the thing from the serial number.
	wait := time.Second
	for {
		a.log.Info("provisioning with the claim certificate", "template", a.cfg.Provisioning.Template)
		id, err := ProvisionOnce(ctx, a.cfg, ks, roots, a.log, false)
		if err == nil {
			adopt(&a.cfg, id)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.mu.Lock()
		a.st.LastError = "provisioning: " + err.Error()
		a.mu.Unlock()
		if !retryable(err) {
			wait = max(wait, 5*time.Minute) // a permanent refusal: the cloud side must change first
		}
		d := time.Duration(rand.Int64N(int64(wait))) + time.Second
		a.log.Warn("provisioning failed; retrying", "err", err, "retry_in", d.Round(time.Second))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		wait = min(2*wait, 30*time.Minute)
	}
}

func retryable(err error) bool {
	var rej *provision.RejectedError
	if errors.As(err, &rej) {
		return rej.Retryable()
	}
	if errors.Is(err, ErrClaimRefused) || errors.Is(err, provision.ErrProgressMismatch) {
		return false // something must change first
	}
	return true // no answer, no connection: try again
}

// ErrClaimRefused: the broker closed the claim connection right after one
// of provisioning's SUBSCRIBEs or PUBLISHes, which is how AWS IoT Core
// refuses a topic the claim certificate's policy does not allow. See
// *ClaimClosedError.
var ErrClaimRefused = errors.New("the broker closed the claim connection at a provisioning request")

// ClaimClosedError says which request the broker closed the claim
// connection at, and what that probably means.
type ClaimClosedError struct {
	Request  string // "SUBSCRIBE to $aws/provisioning-templates/x/provision/json/accepted", ...
	Template string
}

func (e *ClaimClosedError) Error() string {
	why := "the claim certificate's policy probably does not allow the fleet provisioning topics " +
		"($aws/certificates/create/* and $aws/certificates/create-from-csr/*)"
	if strings.Contains(e.Request, "$aws/provisioning-templates/") {
		why = fmt.Sprintf("template %q is probably not one the claim certificate's policy allows "+
			"(check the template name, --template or provisioning.template, against the claim's policy)", e.Template)
	}
	return fmt.Sprintf("the broker closed the claim connection right after the %s: %s", e.Request, why)
}

func (e *ClaimClosedError) Unwrap() error { return ErrClaimRefused }

// claimConn is the claim connection as provisioning uses it: it remembers
// the request waiting for the broker's acknowledgement (a SUBSCRIBE until
// the broker has granted it, a PUBLISH until its PUBACK) and how many
// times the connection had closed then, so that a connection closed under
// it is reported as the refusal it is (*ClaimClosedError) instead of
// reconnecting until the deadline.
type claimConn struct {
	*transport.Client
	template string

	mu      sync.Mutex
	pending string // the request being acknowledged; "" when none
	closes  uint64 // Stats().Disconnects when pending was set
}

// claimPoll is how often a wait for a SUBSCRIBE's acknowledgement looks
// for a closed connection.
const claimPoll = 50 * time.Millisecond

func (c *claimConn) setPending(s string) {
	n := c.Client.Stats().Disconnects
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != "" && strings.HasPrefix(c.pending, "SUBSCRIBE to ") && strings.HasPrefix(s, "SUBSCRIBE to ") {
		c.pending += ", " + strings.TrimPrefix(s, "SUBSCRIBE to ") // one SUBSCRIBE carries them all
		return
	}
	c.pending, c.closes = s, n
}

// refused returns the *ClaimClosedError when the connection closed while
// a request awaited its acknowledgement, else nil.
func (c *claimConn) refused() error {
	n := c.Client.Stats().Disconnects
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == "" || n == c.closes {
		return nil
	}
	return &ClaimClosedError{Request: c.pending, Template: c.template}
}

func (c *claimConn) Subscribe(filter string, qos byte, h func(topic string, payload []byte)) error {
	c.setPending("SUBSCRIBE to " + filter)
	return c.Client.Subscribe(filter, qos, h)
}

func (c *claimConn) WaitSubscribed(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Client.WaitSubscribed(wctx) }()
	tick := time.NewTicker(claimPoll)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err == nil {
				c.setPending("")
			}
			return err
		case <-tick.C:
			if err := c.refused(); err != nil {
				return err
			}
		}
	}
}

func (c *claimConn) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	c.setPending("PUBLISH to " + topic)
	err := c.Client.Publish(ctx, topic, qos, payload)
	if err == nil {
		c.setPending("")
		return nil
	}
	if rerr := c.refused(); rerr != nil && errors.Is(err, transport.ErrNotConnected) {
		return rerr
	}
	return err
}

// adopt points cfg at a provisioned identity.
func adopt(cfg *config.Config, id provision.Identity) {
	cfg.ThingName = id.ThingName
	cfg.Identity.Cert = id.CertificateFile
	if id.KeyFile != "" {
		cfg.Identity.KeyStore, cfg.Identity.Key = "file", id.KeyFile
	}
}

// ProvisionOnce runs fleet provisioning once with the claim certificate of
// cfg.Provisioning: connect as the claim, get a certificate (from a CSR of
// the key store's key when use_csr is set or the key is in the TPM, so the
// key never leaves it; else CreateKeysAndCertificate), register the thing,
// persist the identity in the state dir. It is what `iotagent provision`
// runs on the manufacturing line.
//
// A connection the broker closes while a request waits for its
// acknowledgement ends it at once with a *ClaimClosedError (the claim's
// policy refused the topic); restart discards an unfinished provisioning
// first (provision.Options.Restart).
func ProvisionOnce(ctx context.Context, cfg config.Config, ks tpm.KeyStore, roots *x509.CertPool, log *slog.Logger, restart bool) (provision.Identity, error) {
	p := cfg.Provisioning
	claimCert, err := os.ReadFile(p.ClaimCert)
	if err != nil {
		return provision.Identity{}, fmt.Errorf("claim certificate: %w", err)
	}
	der, _ := nextCertificate(claimCert)
	if der == nil {
		return provision.Identity{}, fmt.Errorf("claim certificate %s: no PEM certificate in it", p.ClaimCert)
	}
	claimKey, err := tpm.NewFileStore(p.ClaimKey).Signer()
	if err != nil {
		return provision.Identity{}, fmt.Errorf("claim key: %w", err)
	}
	params := map[string]string{}
	if serial, err := provision.SerialNumber(); err == nil {
		params["SerialNumber"] = serial
	}
	maps.Copy(params, p.Params)
	if params["SerialNumber"] == "" {
		return provision.Identity{}, errors.New("no serial number: neither /proc/cpuinfo nor /etc/machine-id has one; set provisioning.params.SerialNumber")
	}
	pks, ok := ks.(provision.KeyStore)
	useCSR := p.UseCSR || cfg.Identity.KeyStore == "tpm"
	if useCSR && !ok {
		return provision.Identity{}, fmt.Errorf("key store %v cannot generate keys for a CSR", ks)
	}

	client, err := transport.New(transport.Options{
		Broker:       net.JoinHostPort(cfg.MQTT.Endpoint, strconv.Itoa(cfg.MQTT.Port)),
		ServerName:   cfg.MQTT.TLSServerName(),
		ALPN:         cfg.MQTT.ALPN,
		RootCAs:      roots,
		Certificate:  tls.Certificate{Certificate: [][]byte{der}, PrivateKey: claimKey},
		ClientID:     "provision-" + params["SerialNumber"],
		CleanSession: true,
		KeepAlive:    time.Duration(cfg.MQTT.KeepAliveS) * time.Second,
		BackoffMax:   5 * time.Second,
		Logger:       log.With("component", "provisioning"),
	})
	if err != nil {
		return provision.Identity{}, fmt.Errorf("claim connection: %w", err)
	}
	claim := &claimConn{Client: client, template: p.Template}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = claim.Run(cctx) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(cctx, time.Duration(cfg.MQTT.ConnectTimeoutS)*time.Second+10*time.Second)
	err = claim.WaitConnected(wctx)
	wcancel()
	if err != nil {
		return provision.Identity{}, fmt.Errorf("connect with the claim certificate: %w (last error: %s)", err, claim.Stats().LastError)
	}
	var store provision.KeyStore
	if useCSR {
		store = pks
	}
	sum := sha256.Sum256(der)
	return provision.Provision(ctx, claim, store, provision.Options{
		Template: p.Template,
		Params:   params,
		UseCSR:   useCSR,
		StateDir: cfg.StateDir,
		Format:   p.Format,
		Claim:    hex.EncodeToString(sum[:]),
		Restart:  restart,
	})
}
