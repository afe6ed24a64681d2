package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
)

func certCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		return usagef("usage: iotagent cert rotate [flags]")
	}
	c := newFlags("cert rotate", "cert rotate [flags]",
		"Asks the running agent to rotate its certificate now: a new key (in the TPM\n"+
			"when the TPM is used), a certificate from a CSR over the current connection,\n"+
			"registered to the same thing; the agent switches once the new certificate\n"+
			"has connected. Prints the old certificate's id, to be deactivated.", stderr)
	*c.timeout = 3 * time.Minute
	if err := c.parse(args[1:], 0); err != nil {
		return err
	}
	var r localapi.Rotated
	if err := c.client().Do(context.Background(), localapi.ActionRotateCert, nil, &r); err != nil {
		return err
	}
	if *c.json {
		return printJSON(stdout, r)
	}
	fmt.Fprintf(stdout, "rotated: now using certificate %s (%s)\ndeactivate the old one: aws iot update-certificate --certificate-id %s --new-status INACTIVE\n",
		r.NewCertificateID, r.NewCertificate, r.OldCertificateID)
	return nil
}
