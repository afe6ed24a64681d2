package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
)

// claimPolicyName is the claim policy for a template: iotsim's own for the
// default template, one per other template.
func claimPolicyName(template string) string {
	if template == cloud.ProvisioningTemplate {
		return provisioning.ClaimPolicyName
	}
	return provisioning.ClaimPolicyName + "-" + template
}

// claimCreate mints a claim certificate for the manufacturing line: a new
// key and certificate from iotsim's CA, registered ACTIVE, with the
// provisioning-only claim policy of the template attached, written as
// NAME.crt, NAME.key (0600) and root-ca.pem. The template must exist, and
// existing files are not overwritten without --force (a root-ca.pem with
// the same CA is kept as it is).
func claimCreate(args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("claim create", "iotsim claim create NAME --cert-out DIR [--template T] [--force]", stderr)
	certOut := fs.String("cert-out", "", "directory to write NAME.crt, NAME.key (0600) and root-ca.pem into (required)")
	template := fs.String("template", cloud.ProvisioningTemplate, "fleet provisioning template the claim may use (must exist)")
	force := fs.Bool("force", false, "overwrite an existing NAME.crt, NAME.key, or a root-ca.pem of another CA")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *certOut == "" {
		fs.Usage()
		return errors.New("claim create needs exactly one NAME and --cert-out DIR")
	}
	name := pos[0]
	if !registry.ValidTemplateName(*template) {
		return fmt.Errorf("--template %q: want 1-36 of [0-9A-Za-z_-]", *template)
	}
	if strings.ContainsAny(name, `/\`) || name == "" || name == "." || name == ".." {
		return fmt.Errorf("claim name %q: must be usable as a file name", name)
	}
	policy, doc := claimPolicyName(*template), provisioning.ClaimPolicyDocument(*template)
	var certID string
	var certPEM, keyPEM, caPEM []byte
	db, ok, err := local(*dataDir)
	if err != nil {
		return err
	}
	if ok {
		defer db.Close()
		ca, err := pki.LoadOrCreateCA(*dataDir + "/ca")
		if err != nil {
			return err
		}
		reg := registry.New(db, cloud.DefaultRegion, cloud.DefaultAccount, time.Now)
		_, err = reg.DescribeProvisioningTemplate(*template)
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return err
		}
		if err := checkClaimCreate(*template, err == nil, *certOut, name, ca.CertPEM, *force); err != nil {
			return err
		}
		if certPEM, keyPEM, err = ca.NewKeysAndCertificate(name); err != nil {
			return fmt.Errorf("claim certificate: %w", err)
		}
		c, err := reg.RegisterCertificate(certPEM, registry.StatusActive)
		if err != nil {
			return fmt.Errorf("register claim certificate: %w", err)
		}
		if _, err := reg.CreatePolicy(policy, doc); err != nil && !errors.Is(err, registry.ErrExists) {
			return fmt.Errorf("claim policy %s: %w", policy, err)
		}
		if err := reg.AttachPolicy(policy, c.ARN); err != nil {
			return fmt.Errorf("attach %s: %w", policy, err)
		}
		certID, caPEM = c.ID, ca.CertPEM
	} else {
		c, ep, err := remote(*dataDir)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		exists, err := c.ProvisioningTemplateExists(ctx, *template)
		if err != nil {
			return err
		}
		if caPEM, err = os.ReadFile(ep.RootCA); err != nil {
			return err
		}
		if err := checkClaimCreate(*template, exists, *certOut, name, caPEM, *force); err != nil {
			return err
		}
		if err := c.CreatePolicy(ctx, policy, doc); err != nil && !api.IsCode(err, "ResourceAlreadyExistsException") {
			return err
		}
		id, arn, cp, kp, err := c.CreateKeysAndCertificate(ctx, true)
		if err != nil {
			return err
		}
		if err := c.AttachPolicy(ctx, policy, arn); err != nil {
			return err
		}
		certID, certPEM, keyPEM = id, []byte(cp), []byte(kp)
	}
	if err := cloud.WriteCredentials(*certOut, name, certPEM, keyPEM, caPEM); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "claim certificate %s (policy %s, template %s) in %s/%s.crt\n", certID, policy, *template, *certOut, name)
	return nil
}

// ErrExists: claim create would overwrite a file (without --force).
var ErrExists = errors.New("exists")

// checkClaimCreate refuses, before anything is minted, a template that
// does not exist and files in dir that the claim would overwrite: NAME.crt
// and NAME.key, and a root-ca.pem of another CA (one with the same CA, as
// when several claims go into one directory, is fine).
func checkClaimCreate(template string, templateExists bool, dir, name string, caPEM []byte, force bool) error {
	if !templateExists {
		return fmt.Errorf("--template %q: no such provisioning template (iotsim serve creates %q; make others with aws iot create-provisioning-template)", template, cloud.ProvisioningTemplate)
	}
	if force {
		return nil
	}
	for _, f := range []string{name + ".crt", name + ".key"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s: %w; not overwriting a claim (another NAME, another --cert-out, or --force)", filepath.Join(dir, f), ErrExists)
		}
	}
	p := filepath.Join(dir, "root-ca.pem")
	if old, err := os.ReadFile(p); err == nil && !bytes.Equal(old, caPEM) {
		return fmt.Errorf("%s: %w with another CA; not overwriting it (another --cert-out, or --force)", p, ErrExists)
	}
	return nil
}
