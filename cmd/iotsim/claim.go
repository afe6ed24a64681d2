package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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
// NAME.crt, NAME.key (0600) and root-ca.pem.
func claimCreate(args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("claim create", "iotsim claim create NAME --cert-out DIR [--template T]", stderr)
	certOut := fs.String("cert-out", "", "directory to write NAME.crt, NAME.key (0600) and root-ca.pem into (required)")
	template := fs.String("template", cloud.ProvisioningTemplate, "fleet provisioning template the claim may use")
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
		if caPEM, err = os.ReadFile(ep.RootCA); err != nil {
			return err
		}
	}
	if err := cloud.WriteCredentials(*certOut, name, certPEM, keyPEM, caPEM); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "claim certificate %s (policy %s, template %s) in %s/%s.crt\n", certID, policy, *template, *certOut, name)
	return nil
}
