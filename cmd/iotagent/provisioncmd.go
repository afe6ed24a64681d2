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

// exitRefused: the cloud refused provisioning for good (template, hook or
// parameters); trying again without a change will not help.
const exitRefused = 5

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
stores the identity in the state dir. Prints a JSON result. A device that
is already provisioned prints its identity and changes nothing.

Exit codes: 0 provisioned, 1 failed (no connection or no answer: try
again), 2 usage or configuration, 5 refused by the cloud (template, hook or
parameters: fix those first).`

func provisionCmd(args []string, stdout, stderr io.Writer) error {
	rf := newRunFlags()
	fs := rf.set
	fs.SetOutput(stderr)
	claimCert := fs.String("claim-cert", "", "override provisioning.claim_cert")
	claimKey := fs.String("claim-key", "", "override provisioning.claim_key")
	template := fs.String("template", "", "override provisioning.template")
	keyStore := fs.String("key-store", "", `override identity.key_store: "tpm" or "file"`)
	csr := fs.Bool("csr", false, "use CreateCertificateFromCsr with the key store's key (always so with the TPM)")
	params := paramFlag{}
	fs.Var(params, "param", "a RegisterThing parameter KEY=VALUE (repeatable; SerialNumber defaults to the device's)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: iotagent provision [flags]\n\n%s\n\nFlags:\n", provisionText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("iotagent provision: unexpected argument %q", fs.Arg(0))
	}
	ov := rf.ov
	cfg, err := loadConfigWith(*rf.cfgPath, func(c *config.Config) {
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
		return &exitError{code: exitUsage, err: err}
	}
	if !cfg.Provisioning.Enabled() {
		return usagef("iotagent provision: no claim certificate: set provisioning.claim_cert or --claim-cert")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := now()
	res, err := provisionOnce(ctx, cfg, stderr)
	if err != nil {
		var rej *provision.RejectedError
		if errors.As(err, &rej) && !rej.Retryable() {
			return &exitError{code: exitRefused, err: err}
		}
		return err
	}
	res.DurationMS = now().Sub(start).Milliseconds()
	return printJSON(stdout, res)
}

func provisionOnce(ctx context.Context, cfg config.Config, stderr io.Writer) (provisionResult, error) {
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
	id, err := agent.ProvisionOnce(tctx, cfg, ks, roots, newLogger(cfg, stderr))
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
