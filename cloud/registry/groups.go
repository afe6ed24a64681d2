package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/iotagent/iotagent/cloud/store"
)

// Bucket names for thing groups.
const (
	groupsBucket = "registry.thinggroups"
	// groupMembersBucket maps a thing name to its memberships.
	groupMembersBucket = "registry.thinggroupmembers"
)

// MaxGroupsPerThing is AWS's limit on the thing groups one thing belongs to.
const MaxGroupsPerThing = 10

// ThingGroup is a static thing group.
type ThingGroup struct {
	Name       string            `json:"thingGroupName"`
	ARN        string            `json:"thingGroupArn"`
	ID         string            `json:"thingGroupId"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Version    int64             `json:"version"`
	CreatedAt  time.Time         `json:"creationDate"`
}

// membership is a thing's group list. ThingID ties it to one incarnation of
// the thing: a thing deleted and created again starts in no group.
type membership struct {
	ThingID string   `json:"thingId"`
	Groups  []string `json:"groups"`
}

// CreateThingGroup creates a thing group. Like AWS it is idempotent: the
// same name with the same attributes returns the existing group, with other
// attributes ErrExists. Bad names or attributes give ErrInvalid.
func (r *Registry) CreateThingGroup(name string, attrs map[string]string) (ThingGroup, error) {
	if !ValidThingName(name) {
		return ThingGroup{}, fmt.Errorf("create thing group %q: name must match [a-zA-Z0-9:_-]{1,128}: %w", name, ErrInvalid)
	}
	for k, v := range attrs {
		if !attrNameRE.MatchString(k) || !attrValueRE.MatchString(v) {
			return ThingGroup{}, fmt.Errorf("create thing group %q: attribute %q=%q: %w", name, k, v, ErrInvalid)
		}
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out ThingGroup
	err := r.db.Update(func(tx *store.Tx) error {
		var existing ThingGroup
		err := getJSON(tx, groupsBucket, name, &existing)
		if err == nil {
			if maps.Equal(existing.Attributes, attrs) {
				out = existing
				return nil
			}
			return fmt.Errorf("create thing group %q: exists with other attributes: %w", name, ErrExists)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("create thing group %q: %w", name, err)
		}
		out = ThingGroup{
			Name:       name,
			ARN:        r.arn("thinggroup", name),
			ID:         newUUID(),
			Attributes: maps.Clone(attrs),
			Version:    1,
			CreatedAt:  r.now().UTC(),
		}
		return putJSON(tx, groupsBucket, name, out)
	})
	if err != nil {
		return ThingGroup{}, err
	}
	return out, nil
}

// DescribeThingGroup returns the group or ErrNotFound.
func (r *Registry) DescribeThingGroup(name string) (ThingGroup, error) {
	var g ThingGroup
	if err := r.db.GetJSON(groupsBucket, name, &g); err != nil {
		return ThingGroup{}, fmt.Errorf("describe thing group %q: %w", name, notFound(err))
	}
	return g, nil
}

// ListThingGroups returns every thing group, ordered by name.
func (r *Registry) ListThingGroups() ([]ThingGroup, error) {
	var out []ThingGroup
	err := r.db.ForEach(groupsBucket, "", func(_ string, v []byte) error {
		var g ThingGroup
		if err := json.Unmarshal(v, &g); err != nil {
			return err
		}
		out = append(out, g)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list thing groups: %w", err)
	}
	return out, nil
}

// AddThingToThingGroup adds a thing to a group. Both must exist
// (ErrNotFound); a thing already in MaxGroupsPerThing groups gives
// ErrInvalid. Adding twice is not an error.
func (r *Registry) AddThingToThingGroup(group, thing string) error {
	return r.changeMembership(group, thing, true)
}

// RemoveThingFromThingGroup removes a thing from a group. Both must exist
// (ErrNotFound); removing a thing that is not a member is not an error.
func (r *Registry) RemoveThingFromThingGroup(group, thing string) error {
	return r.changeMembership(group, thing, false)
}

func (r *Registry) changeMembership(group, thing string, add bool) error {
	return r.Update(func(t *Txn) error { return t.changeMembership(group, thing, add) })
}

// membershipOf returns thing t's memberships, ignoring those of an earlier
// thing with the same name.
func membershipOf(get getter, t Thing) (membership, error) {
	var m membership
	err := getJSONWith(get, groupMembersBucket, t.Name, &m)
	if errors.Is(err, store.ErrNotFound) || err == nil && m.ThingID != t.ID {
		return membership{ThingID: t.ID}, nil
	}
	return m, err
}

// ThingGroupsOf returns the names of the groups the thing belongs to,
// ordered by name (ErrNotFound if there is no such thing).
func (r *Registry) ThingGroupsOf(thing string) ([]string, error) {
	t, err := r.DescribeThing(thing)
	if err != nil {
		return nil, fmt.Errorf("thing groups of %q: %w", thing, err)
	}
	m, err := membershipOf(r.db.Get, t)
	if err != nil {
		return nil, fmt.Errorf("thing groups of %q: %w", thing, err)
	}
	return m.Groups, nil
}
