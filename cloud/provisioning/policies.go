package provisioning

import (
	"errors"
	"fmt"

	"github.com/iotagent/iotagent/cloud/registry"
)

// RegistryPolicies adapts the registry's policies and thing groups to
// Policies.
func RegistryPolicies(reg *registry.Registry) Policies { return regPolicies{reg} }

type regPolicies struct{ r *registry.Registry }

func (p regPolicies) CreatePolicy(name, document string) error {
	_, err := p.r.CreatePolicy(name, document)
	return err
}

func (p regPolicies) PolicyExists(name string) (bool, error) {
	_, err := p.r.GetPolicy(name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, registry.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("get policy %s: %w", name, err)
}

func (p regPolicies) AttachPolicy(name, targetARN string) error {
	return p.r.AttachPolicy(name, targetARN)
}

func (p regPolicies) AddThingToThingGroup(group, thing string) error {
	return p.r.AddThingToThingGroup(group, thing)
}
