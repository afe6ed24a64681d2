package main

import (
	"errors"

	"github.com/iotagent/iotagent/agent"
)

// checkIdentityThing checks that the config and the provisioned identity name
// the same thing, and goes on with the identity's thing and certificate as
// the agent does.
func (d *diagRun) checkIdentityThing() {
	const check = "identity"
	cfg := d.cfg
	found, err := agent.AdoptIdentity(&cfg)
	var mismatch *agent.ThingMismatchError
	switch {
	case errors.As(err, &mismatch):
		d.add(check, fail, "config "+d.env.cfgPath+" names thing "+mismatch.Config+"; this device is provisioned as "+
			mismatch.Identity+" ("+mismatch.IdentityFile+"): the agent refuses to start",
			"remove thing_name from "+d.env.cfgPath+" (or set it to "+mismatch.Identity+"); to make this device "+
				mismatch.Config+", move "+mismatch.IdentityFile+"'s directory aside and provision again")
	case err != nil:
		d.add(check, warn, err.Error(), "")
	case found:
		d.cfg = cfg
		d.add(check, pass, cfg.ThingName+", from the provisioned identity "+cfg.IdentityFile(), "")
	default:
		d.add(check, pass, cfg.ThingName+", from the config (not provisioned: no "+cfg.IdentityFile()+")", "")
	}
}
