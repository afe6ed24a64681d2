package agent

import (
	"errors"
	"fmt"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/provision"
)

// ThingMismatchError is a config that names another thing than the one
// this device is provisioned as: its certificate belongs to the identity's
// thing, and AWS IoT refuses it for any other.
type ThingMismatchError struct {
	Config       string // the config's thing_name (or --thing-name)
	Identity     string // the provisioned thing
	IdentityFile string // STATE/identity/identity.json
}

func (e *ThingMismatchError) Error() string {
	return fmt.Sprintf("thing_name %q is not this device: it is provisioned as %q (%s), and its certificate is good for that thing only. "+
		"Fix: remove thing_name from the config (the identity names the thing) or set it to %q; "+
		"to make this device %q instead, move %s aside and provision it again",
		e.Config, e.Identity, e.IdentityFile, e.Identity, e.Config, e.IdentityFile)
}

// AdoptIdentity points cfg at the identity provisioned in its state dir,
// when there is one: the thing name, certificate and key file then come
// from the identity, and a config that names another thing is refused
// with a *ThingMismatchError. It reports whether an identity was found.
func AdoptIdentity(cfg *config.Config) (bool, error) {
	id, err := provision.Load(cfg.StateDir)
	if errors.Is(err, provision.ErrNotProvisioned) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", cfg.IdentityFile(), err)
	}
	if cfg.ThingName != "" && cfg.ThingName != id.ThingName {
		return true, &ThingMismatchError{Config: cfg.ThingName, Identity: id.ThingName, IdentityFile: cfg.IdentityFile()}
	}
	adopt(cfg, id)
	return true, nil
}

// adoptIdentity is AdoptIdentity at start. An unreadable identity stops
// the agent only when nothing else names the thing.
func (a *Agent) adoptIdentity() error {
	named := a.cfg.ThingName
	found, err := AdoptIdentity(&a.cfg)
	var mismatch *ThingMismatchError
	switch {
	case errors.As(err, &mismatch):
		return err
	case err != nil && named == "" && !a.cfg.Provisioning.Enabled():
		return fmt.Errorf("thing name: %w", err)
	case err != nil:
		a.log.Warn("identity unreadable; going on with the config's identity", "err", err)
	case found && named == "":
		a.log.Info("thing name from the provisioned identity", "thing", a.cfg.ThingName, "identity", a.cfg.IdentityFile())
	}
	return nil
}
