package defender

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrVersionMismatch: an expectedVersion does not match the profile's
// version (AWS's VersionConflictException).
var ErrVersionMismatch = errors.New("defender: version mismatch")

// DetachSecurityProfile detaches a profile from a target. The profile
// must exist (ErrNotFound); detaching a target that is not attached is
// ErrNotFound too, as AWS answers ResourceNotFoundException.
func (s *Service) DetachSecurityProfile(name, target string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[name]
	if !ok {
		return fmt.Errorf("security profile %s: %w", name, ErrNotFound)
	}
	i := slices.Index(p.Targets, target)
	if i < 0 {
		return fmt.Errorf("security profile %s is not attached to %s: %w", name, truncate(target, 200), ErrNotFound)
	}
	cp := *p
	cp.Targets = slices.Delete(slices.Clone(p.Targets), i, i+1)
	if err := s.o.DB.PutJSON(bucketProfiles, name, &cp); err != nil {
		return fmt.Errorf("store security profile: %w", err)
	}
	s.profiles[name] = &cp
	return nil
}

// DeleteSecurityProfile deletes a profile, its attachments and its
// detection state. expectedVersion, if not nil, must match
// (ErrVersionMismatch). Deleting a profile that does not exist succeeds,
// as on AWS (whose DeleteSecurityProfile has no not-found error).
func (s *Service) DeleteSecurityProfile(name string, expectedVersion *int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[name]
	if !ok {
		return nil
	}
	if expectedVersion != nil && *expectedVersion != p.Version {
		return fmt.Errorf("security profile %s is at version %d, not %d: %w", name, p.Version, *expectedVersion, ErrVersionMismatch)
	}
	if err := s.o.DB.Delete(bucketProfiles, name); err != nil {
		return fmt.Errorf("delete security profile %s: %w", name, err)
	}
	delete(s.profiles, name)
	for k := range s.states {
		if k.profile == name {
			delete(s.states, k)
		}
	}
	s.updateFlagsLocked()
	return nil
}

// ListSecurityProfiles returns every profile, ordered by name.
func (s *Service) ListSecurityProfiles() []SecurityProfile {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SecurityProfile, 0, len(s.profiles))
	for _, p := range s.profiles {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b SecurityProfile) int { return strings.Compare(a.Name, b.Name) })
	return out
}
