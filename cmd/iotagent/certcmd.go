package main

import (
	"flag"
	"fmt"

	"github.com/iotagent/iotagent/agent/localapi"
)

const certRotateText = `Asks the running agent to rotate its certificate now: a new key (in the TPM
when the TPM is used), a certificate from a CSR over the current connection,
registered to the same thing; the agent switches once the new certificate
has connected. Prints the old certificate's id, to be deactivated.`

func certRotateSetup(fs *flag.FlagSet) runFunc {
	// A rotation takes a round trip to the cloud and a reconnect.
	if f := fs.Lookup("timeout"); f != nil {
		_ = f.Value.Set("3m")
		f.DefValue = "3m0s"
	}
	return func(x *inv) error {
		var r localapi.Rotated
		if err := x.do(localapi.ActionRotateCert, nil, &r); err != nil {
			return err
		}
		if x.json {
			return printJSON(x.stdout, r)
		}
		fmt.Fprintf(x.stdout, "rotated: now using certificate %s (%s)\ndeactivate the old one: aws iot update-certificate --certificate-id %s --new-status INACTIVE\n",
			r.NewCertificateID, r.NewCertificate, r.OldCertificateID)
		return nil
	}
}
