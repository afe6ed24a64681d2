package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/provision"
	"github.com/iotagent/iotagent/tpm"
)

type paramFlag map[string]string

func (p paramFlag) String() string { return fmt.Sprint(map[string]string(p)) }
func (p paramFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	p[k] = v
	return nil
}

// provisionResult is what `iotagent provision` prints.
type provisionResult struct {
	ThingName     string `json:"thing_name"`
	CertificateID string `json:"certificate_id"`
	Certificate   string `json:"certificate"`
	KeyStore      string `json:"key_store"`
	AlreadyDone   bool   `json:"already_provisioned,omitempty"`
	DurationMS    int64  `json:"duration_ms"`
}

const provisionText = `Runs fleet provisioning once, as the manufacturing line does: connects
with the claim certificate, gets a device certificate (from a CSR of the key
store's key with --csr or the TPM, so the key never leaves it; otherwise
CreateKeysAndCertificate), registers the thing through the template, and
stores the identity in the state dir. Prints the identity as JSON (with or
without --json: the line's scripts read it). A device that is already provisioned prints its identity and
changes nothing. A failure to connect or to get an answer exits 1 (try
again); a refusal by the cloud exits 5 (fix the template, its hook or the
parameters first), and so does a claim connection the broker closes at a
request (the claim's policy does not allow the template?).

An unfinished provisioning (STATE_DIR/identity/progress.json) resumes
when run again with the same claim, template and parameters, and is
refused with other ones (exit 2): RegisterThing may already have been sent.
--restart (or deleting that file) starts over with a new certificate.`

func provisionSetup(fs *flag.FlagSet) runFunc {
	ov := runFlags(fs)
	claimCert := fs.String("claim-cert", "", "override provisioning.claim_cert")
	claimKey := fs.String("claim-key", "", "override provisioning.claim_key")
	template := fs.String("template", "", "override provisioning.template")
	keyStore := fs.String("key-store", "", `override identity.key_store: "tpm" or "file"`)
	csr := fs.Bool("csr", false, "use CreateCertificateFromCsr with the key store's key (always so with the TPM)")
	restart := fs.Bool("restart", false, "discard an unfinished provisioning (STATE_DIR/identity/progress.json) and start over")
	params := paramFlag{}
	fs.Var(params, "param", "a RegisterThing parameter KEY=VALUE (repeatable; SerialNumber defaults to the device's)")
	return func(x *inv) error {
		return provisionRun(x, ov, claimCert, claimKey, template, keyStore, csr, restart, params)
	}
}

func provisionRun(x *inv, ov overrides, claimCert, claimKey, template, keyStore *string, csr, restart *bool, params paramFlag) error {
	stdout, stderr := x.stdout, x.stderr
	cfg, err := x.loadConfig(func(c *config.Config) {
		ov.apply(c)
		p := &c.Provisioning
		for dst, v := range map[*string]string{&p.ClaimCert: absPath(*claimCert), &p.ClaimKey: absPath(*claimKey), &p.Template: *template, &c.Identity.KeyStore: *keyStore} {
			if v != "" {
				*dst = v
			}
		}
		if *csr {
			p.UseCSR = true
		}
		if len(params) > 0 && p.Params == nil {
			p.Params = map[string]string{}
		}
		for k, v := range params {
			p.Params[k] = v
		}
	})
	if err != nil {
		return err
	}
	if !cfg.Provisioning.Enabled() {
		return &usageError{cmd: x.cmd, msg: fmt.Sprintf("iotagent provision: no claim certificate: set provisioning.claim_cert in %s or give --claim-cert", x.configFile())}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := now()
	res, err := provisionOnce(ctx, cfg, stderr, *restart)
	if err != nil {
		var rej *provision.RejectedError
		switch {
		case errors.As(err, &rej) && !rej.Retryable():
			return withHint(&exitError{code: exitRefused, err: err}, "the cloud refused for good: fix the template, its pre-provisioning hook or the --param values, then run provision again")
		case errors.Is(err, agent.ErrClaimRefused):
			return withHint(&exitError{code: exitRefused, err: err}, "check --template against the templates the claim certificate's policy allows, then run provision again")
		case errors.Is(err, provision.ErrProgressMismatch):
			return withHint(&exitError{code: exitUsage, err: err}, "run again with the same settings, or with --restart to start over")
		}
		return withHint(&retryableError{err}, "check the endpoint, the claim certificate and the network (iotagent diag), then run provision again")
	}
	res.DurationMS = now().Sub(start).Milliseconds()
	return printJSON(stdout, res) // JSON with or without --json: the line's scripts read it
}

func provisionOnce(ctx context.Context, cfg config.Config, stderr io.Writer, restart bool) (provisionResult, error) {
	if id, err := provision.Load(cfg.StateDir); err == nil {
		return provisionResult{ThingName: id.ThingName, CertificateID: id.CertificateID, Certificate: id.CertificateFile,
			KeyStore: keyStoreName(cfg, id), AlreadyDone: true}, nil
	} else if !errors.Is(err, provision.ErrNotProvisioned) {
		return provisionResult{}, err
	}
	ks, err := tpm.OpenKeyStore(cfg.Identity.KeyStore, cfg.Identity.Key,
		tpm.TPMConfig{Device: cfg.Identity.TPM.Device, Handle: uint32(cfg.Identity.TPM.Handle)})
	if err != nil {
		return provisionResult{}, fmt.Errorf("key store: %w", err)
	}
	defer ks.Close()
	roots, err := agent.LoadRoots(cfg.MQTT.RootCA)
	if err != nil {
		return provisionResult{}, err
	}
	tctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	id, err := agent.ProvisionOnce(tctx, cfg, ks, roots, newLogger(cfg, stderr), restart)
	if err != nil {
		return provisionResult{}, err
	}
	return provisionResult{ThingName: id.ThingName, CertificateID: id.CertificateID, Certificate: id.CertificateFile,
		KeyStore: keyStoreName(cfg, id)}, nil
}

func keyStoreName(cfg config.Config, id provision.Identity) string {
	if id.KeyFile != "" {
		return "file:" + id.KeyFile
	}
	if cfg.Identity.KeyStore == "tpm" {
		return fmt.Sprintf("tpm:%s@%v", cfg.Identity.TPM.Device, cfg.Identity.TPM.Handle)
	}
	return "file:" + cfg.Identity.Key
}
