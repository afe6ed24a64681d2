package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/iotagent/iotagent/cloud/policy"
	"github.com/iotagent/iotagent/cloud/store"
)

// Bucket names for IoT policies.
const (
	policiesBucket = "registry.policies"
	// policyTargetsBucket maps a target ARN (certificate or thing group) to
	// the sorted names of the policies attached to it.
	policyTargetsBucket = "registry.policytargets"
)

// MaxPoliciesPerTarget is AWS's limit on policies attached to one
// certificate or thing group.
const MaxPoliciesPerTarget = 10

var (
	// ErrMalformedPolicy: the policy document is not valid (AWS's
	// MalformedPolicyException). The error also wraps policy.ErrMalformed.
	ErrMalformedPolicy = errors.New("registry: malformed policy document")
	// ErrLimitExceeded: an AWS quota would be exceeded (LimitExceededException).
	ErrLimitExceeded = errors.New("registry: limit exceeded")
)

var policyNameRE = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)

// Policy is an IoT policy. Only its default version is kept.
type Policy struct {
	Name             string    `json:"policyName"`
	ARN              string    `json:"policyArn"`
	Document         string    `json:"policyDocument"`
	DefaultVersionID string    `json:"defaultVersionId"`
	CreatedAt        time.Time `json:"creationDate"`
}

// ValidPolicyName reports whether name satisfies AWS's policy name rule,
// [\w+=,.@-]{1,128}.
func ValidPolicyName(name string) bool { return policyNameRE.MatchString(name) }

// CreatePolicy creates a policy whose version 1 is document. A bad name
// gives ErrInvalid, a document that does not parse ErrMalformedPolicy, an
// existing name ErrExists.
func (r *Registry) CreatePolicy(name, document string) (Policy, error) {
	var p Policy
	err := r.Update(func(t *Txn) (err error) {
		p, err = t.CreatePolicy(name, document)
		return err
	})
	return p, err
}

// newPolicy checks name and document and returns the policy, not yet
// stored.
func (r *Registry) newPolicy(name, document string) (Policy, error) {
	if !ValidPolicyName(name) {
		return Policy{}, fmt.Errorf("create policy %q: name must match [\\w+=,.@-]{1,128}: %w", name, ErrInvalid)
	}
	if _, err := policy.Parse(document); err != nil {
		return Policy{}, fmt.Errorf("create policy %q: %w: %w", name, ErrMalformedPolicy, err)
	}
	return Policy{
		Name:             name,
		ARN:              r.arn("policy", name),
		Document:         document,
		DefaultVersionID: "1",
		CreatedAt:        r.now().UTC(),
	}, nil
}

// GetPolicy returns the policy or ErrNotFound.
func (r *Registry) GetPolicy(name string) (Policy, error) {
	var p Policy
	if err := r.db.GetJSON(policiesBucket, name, &p); err != nil {
		return Policy{}, fmt.Errorf("get policy %q: %w", name, notFound(err))
	}
	return p, nil
}

// ListPolicies returns every policy, ordered by name.
func (r *Registry) ListPolicies() ([]Policy, error) {
	var out []Policy
	err := r.db.ForEach(policiesBucket, "", func(_ string, v []byte) error {
		var p Policy
		if err := json.Unmarshal(v, &p); err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	return out, nil
}

// AttachPolicy attaches a policy to a target: a certificate ARN or a thing
// group ARN, as AWS's AttachPolicy. An unknown policy or target gives
// ErrNotFound, a target that is neither ErrInvalid, an eleventh policy on
// one target ErrLimitExceeded. Attaching twice is not an error.
func (r *Registry) AttachPolicy(name, target string) error {
	return r.changePolicyTarget(name, target, true)
}

// DetachPolicy detaches a policy from a target. Detaching a policy that is
// not attached is not an error; an unknown policy or target is ErrNotFound.
func (r *Registry) DetachPolicy(name, target string) error {
	return r.changePolicyTarget(name, target, false)
}

func (r *Registry) changePolicyTarget(name, target string, attach bool) error {
	return r.Update(func(t *Txn) error { return t.changePolicyTarget(name, target, attach) })
}

// getter reads one key: *store.Tx's Get or *store.DB's.
type getter func(bucket, key string) ([]byte, error)

// checkTarget checks that target is the ARN of a registered certificate or
// an existing thing group in this registry's region and account.
func (r *Registry) checkTarget(get getter, target string) error {
	prefix := "arn:aws:iot:" + r.region + ":" + r.account + ":"
	rest, ok := strings.CutPrefix(target, prefix)
	if !ok {
		if strings.HasPrefix(target, "arn:") {
			return fmt.Errorf("target %s: %w", target, ErrNotFound)
		}
		return fmt.Errorf("target %q is not a certificate or thing group ARN: %w", target, ErrInvalid)
	}
	switch kind, id, _ := strings.Cut(rest, "/"); kind {
	case "cert":
		if _, err := get(certsBucket, id); err != nil {
			return fmt.Errorf("certificate %s: %w", id, notFound(err))
		}
	case "thinggroup":
		if _, err := get(groupsBucket, id); err != nil {
			return fmt.Errorf("thing group %s: %w", id, notFound(err))
		}
	default:
		return fmt.Errorf("target %q is not a certificate or thing group ARN: %w", target, ErrInvalid)
	}
	return nil
}

// AttachedPolicies returns the policies attached directly to target (a
// certificate or thing group ARN), ordered by name.
func (r *Registry) AttachedPolicies(target string) ([]Policy, error) {
	if err := r.checkTarget(r.db.Get, target); err != nil {
		return nil, fmt.Errorf("list attached policies: %w", err)
	}
	out, err := r.policiesOf(r.db.Get, target, nil)
	if err != nil {
		return nil, fmt.Errorf("list attached policies: %w", err)
	}
	return out, nil
}

// policiesOf appends the policies attached to target that are not in have.
func (r *Registry) policiesOf(get getter, target string, have []Policy) ([]Policy, error) {
	var names []string
	if err := getJSONWith(get, policyTargetsBucket, target, &names); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return have, nil
		}
		return nil, err
	}
	for _, n := range names {
		if slices.ContainsFunc(have, func(p Policy) bool { return p.Name == n }) {
			continue
		}
		p, err := r.readPolicy(get, n)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return nil, err
		}
		have = append(have, p)
	}
	return have, nil
}

// EffectivePolicies returns the policies that apply to a connection of
// certificate certID as thing (thing may be ""): the certificate's own and
// those of every thing group the thing belongs to, each once, ordered by
// name. An unknown certificate gives ErrNotFound.
func (r *Registry) EffectivePolicies(certID, thing string) (out []Policy, err error) {
	err = r.db.View(func(tx *store.Tx) error {
		out, err = r.effectivePolicies(tx.Get, certID, thing)
		return err
	})
	return out, err
}

// effectivePolicies is EffectivePolicies with its reads through get (one
// read transaction's).
func (r *Registry) effectivePolicies(get getter, certID, thing string) ([]Policy, error) {
	if _, err := get(certsBucket, certID); err != nil {
		return nil, fmt.Errorf("effective policies: certificate %s: %w", certID, notFound(err))
	}
	out, err := r.policiesOf(get, r.arn("cert", certID), nil)
	if err != nil {
		return nil, fmt.Errorf("effective policies: %w", err)
	}
	if thing != "" {
		var t Thing
		err := getJSONWith(get, thingsBucket, thing, &t)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("effective policies: %w", err)
		}
		var m membership
		if err == nil {
			if m, err = membershipOf(get, t); err != nil {
				return nil, fmt.Errorf("effective policies: %w", err)
			}
		}
		for _, g := range m.Groups {
			if out, err = r.policiesOf(get, r.arn("thinggroup", g), out); err != nil {
				return nil, fmt.Errorf("effective policies: %w", err)
			}
		}
	}
	slices.SortFunc(out, func(a, b Policy) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// WatchPolicies registers fn to be called, outside the registry's lock,
// after every change that can alter a connection's effective policies:
// policy attachments and thing group membership. fn must not block for long.
func (r *Registry) WatchPolicies(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.policyWatchers = append(r.policyWatchers, fn)
}

// readPolicy reads a stored policy through get, decoding its bytes again
// only when they changed since the last read (every connection's
// effective policies are read at CONNECT).
func (r *Registry) readPolicy(get getter, name string) (Policy, error) {
	raw, err := get(policiesBucket, name)
	if err != nil {
		return Policy{}, err
	}
	if v, ok := r.policies.Load(name); ok {
		if d := v.(*decodedPolicy); bytes.Equal(d.raw, raw) {
			return d.p, nil
		}
	}
	var p Policy
	if err := json.Unmarshal(raw, &p); err != nil {
		return Policy{}, fmt.Errorf("decode %s/%s: %w", policiesBucket, name, err)
	}
	if _, loaded := r.policies.Swap(name, &decodedPolicy{raw: raw, p: p}); !loaded && r.policyCount.Add(1) > maxDecodedPolicies {
		r.policies.Clear()
		r.policyCount.Store(0)
	}
	return p, nil
}

// maxDecodedPolicies bounds the decoded policy cache; past it, it starts
// over.
const maxDecodedPolicies = 1024

// decodedPolicy is a stored policy's bytes and their decoding (a Policy
// holds only values, so copies share nothing).
type decodedPolicy struct {
	raw []byte
	p   Policy
}

// PolicyChange is the scope of one change to policy attachments or thing
// group membership: the connections of certificate CertificateID (a policy
// attached to or detached from it), of thing Thing (the thing joined or
// left a group), or, when both are empty, any connection (a thing group's
// policies changed).
type PolicyChange struct {
	CertificateID string
	Thing         string
}

// WatchPolicyChanges registers fn to be called, outside the registry's
// lock, after every change WatchPolicies reports, once per change with its
// scope, so that a cache of effective policies can drop only the entries
// the change can alter. fn must not block for long.
func (r *Registry) WatchPolicyChanges(fn func(PolicyChange)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.policyChangeWatchers = append(r.policyChangeWatchers, fn)
}

// targetChange is the scope of a change to the policies of target, a
// certificate or thing group ARN (checkTarget accepted it).
func (r *Registry) targetChange(target string) PolicyChange {
	if id, ok := strings.CutPrefix(target, r.arn("cert", "")); ok {
		return PolicyChange{CertificateID: id}
	}
	return PolicyChange{}
}

func getJSONWith(get getter, bucket, key string, v any) error {
	b, err := get(bucket, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return nil
}
