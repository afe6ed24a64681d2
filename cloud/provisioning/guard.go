package provisioning

import (
	"errors"
	"fmt"
	"strings"

	"github.com/iotagent/iotagent/cloud/registry"
)

// TakeoverGuardFunction is the function name of iotsim's built-in
// pre-provisioning check. A template whose pre-provisioning hook targets
// arn:aws:lambda:REGION:ACCOUNT:function:iotsim-refuse-takeover (iotsim's
// default template does) refuses a RegisterThing that would attach a
// certificate to a thing that already has another ACTIVE certificate,
// unless the request comes over a connection of one of that thing's own
// certificates (certificate rotation). docs/manufacturing.md shows the
// Lambda that does the same on AWS.
const TakeoverGuardFunction = "iotsim-refuse-takeover"

// TakeoverGuardARN is the hook target of the built-in check.
func TakeoverGuardARN(region, account string) string {
	return "arn:aws:lambda:" + region + ":" + account + ":function:" + TakeoverGuardFunction
}

// IsTakeoverGuard reports whether a hook target is the built-in check, in
// any region and account.
func IsTakeoverGuard(targetARN string) bool {
	return strings.HasPrefix(targetARN, "arn:aws:lambda:") && strings.HasSuffix(targetARN, ":function:"+TakeoverGuardFunction)
}

// refuseTakeover is the built-in check, inside the transaction that
// attaches certID to thing: requester is the certificate id of the
// connection that asked.
func refuseTakeover(tx *registry.Txn, thing, certID, requester string) error {
	existing, err := tx.DescribeThing(thing)
	if errors.Is(err, registry.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("describe thing %s: %w", thing, err)
	}
	for _, id := range existing.Principals {
		if id == requester {
			return nil // rotation: the thing's own certificate asks
		}
	}
	for _, id := range existing.Principals {
		if id == certID {
			continue
		}
		c, err := tx.DescribeCertificate(id)
		if errors.Is(err, registry.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("describe certificate %s of thing %s: %w", id, thing, err)
		}
		if c.Status == registry.StatusActive {
			return reject(403, CodeAccessDenied,
				"Thing %s already exists with another ACTIVE certificate; only a connection with one of its certificates may register a certificate for it (rotation). Deactivate its certificate to provision it again.", thing)
		}
	}
	return nil
}
