package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/iotagent/iotagent/cloud/store"
)

// ErrVersionMismatch: an expectedVersion does not match the stored
// version (AWS's VersionConflictException).
var ErrVersionMismatch = errors.New("registry: version mismatch")

// DeletePolicy deletes a policy. A policy still attached to a certificate
// or thing group cannot be deleted (ErrConflict), as on AWS; a policy that
// does not exist gives ErrNotFound.
func (r *Registry) DeletePolicy(name string) error {
	return r.Update(func(t *Txn) error {
		if _, err := t.tx.Get(policiesBucket, name); err != nil {
			return fmt.Errorf("delete policy %q: %w", name, notFound(err))
		}
		var targets []string
		err := t.tx.ForEach(policyTargetsBucket, "", func(target string, v []byte) error {
			var names []string
			if err := json.Unmarshal(v, &names); err != nil {
				return fmt.Errorf("policy targets of %s: %w", target, err)
			}
			if slices.Contains(names, name) {
				targets = append(targets, target)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("delete policy %q: %w", name, err)
		}
		if len(targets) > 0 {
			return fmt.Errorf("delete policy %q: attached to %d target(s), the first %s: %w", name, len(targets), targets[0], ErrConflict)
		}
		if err := t.tx.Delete(policiesBucket, name); err != nil {
			return fmt.Errorf("delete policy %q: %w", name, err)
		}
		return nil
	})
}

// DeleteThingGroup deletes a thing group: its things leave it and its
// policies are detached. expectedVersion, if not nil, must match the
// group's version (ErrVersionMismatch). A group that does not exist gives
// ErrNotFound.
func (r *Registry) DeleteThingGroup(name string, expectedVersion *int64) error {
	return r.Update(func(t *Txn) error {
		var g ThingGroup
		if err := getJSON(t.tx, groupsBucket, name, &g); err != nil {
			return fmt.Errorf("delete thing group %q: %w", name, notFound(err))
		}
		if expectedVersion != nil && *expectedVersion != g.Version {
			return fmt.Errorf("delete thing group %q: version %d, expected %d: %w", name, g.Version, *expectedVersion, ErrVersionMismatch)
		}
		type change struct {
			thing string
			m     membership
		}
		var changes []change
		err := t.tx.ForEach(groupMembersBucket, "", func(thing string, v []byte) error {
			var m membership
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("groups of %s: %w", thing, err)
			}
			if slices.Contains(m.Groups, name) {
				m.Groups = remove(m.Groups, name)
				changes = append(changes, change{thing, m})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("delete thing group %q: %w", name, err)
		}
		for _, c := range changes {
			var err error
			if len(c.m.Groups) == 0 {
				err = t.tx.Delete(groupMembersBucket, c.thing)
			} else {
				err = putJSON(t.tx, groupMembersBucket, c.thing, c.m)
			}
			if err != nil {
				return fmt.Errorf("delete thing group %q: %w", name, err)
			}
			t.policyChanges = append(t.policyChanges, PolicyChange{Thing: c.thing})
		}
		if err := t.tx.Delete(policyTargetsBucket, g.ARN); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete thing group %q: %w", name, err)
		}
		if err := t.tx.Delete(groupsBucket, name); err != nil {
			return fmt.Errorf("delete thing group %q: %w", name, err)
		}
		return nil
	})
}
