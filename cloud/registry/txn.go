package registry

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/store"
)

// Txn is one registry transaction: the reads and changes made through it
// land together, with one commit (one fsync), or not at all. Registry.Update
// gives one; the Registry's own methods of the same names are each a Txn
// of one call. A Txn method that fails changes nothing, so a caller may
// carry on after an error it expects (ErrExists from CreatePolicy, say).
// A Txn is valid only during its Update.
type Txn struct {
	r  *Registry
	tx *store.Tx
	// certChanges are the certificate status changes, and policyChanges
	// the attachment and membership changes: the watchers are told after
	// the commit.
	certChanges   []certChange
	policyChanges []PolicyChange
}

type certChange struct{ id, status string }

// Update runs fn in one transaction over the registry. If fn returns an
// error, nothing it changed is stored and Update returns that error. The
// watchers (WatchCertificates, WatchPolicies) are called after the commit,
// outside the registry's lock.
func (r *Registry) Update(fn func(t *Txn) error) error {
	var t *Txn
	r.mu.Lock()
	err := r.db.Update(func(tx *store.Tx) error {
		t = &Txn{r: r, tx: tx} // afresh on each attempt
		return fn(t)
	})
	w := r.watchersNow()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	r.notify(t, w)
	return nil
}

// Batch is Update for concurrent callers (fleet provisioning of many
// devices at once), through store.DB.Batch's group commit: a call made
// while no commit is under way commits at once, and the calls that arrive
// during a commit share the next transaction and its one fsync. Each
// caller gets its own fn's error, and a fn that fails leaves nothing
// behind. fn may run more than once, so it must set its results afresh on
// each call.
func (r *Registry) Batch(fn func(t *Txn) error) error {
	var t *Txn
	err := r.db.Batch(func(tx *store.Tx) error {
		t = &Txn{r: r, tx: tx} // afresh on each attempt
		return fn(t)
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	w := r.watchersNow()
	r.mu.Unlock()
	r.notify(t, w)
	return nil
}

// watcherSet is a copy of the registered watchers, taken under r.mu.
type watcherSet struct {
	certs         []func(id, status string)
	policies      []func()
	policyChanges []func(PolicyChange)
}

func (r *Registry) watchersNow() watcherSet {
	return watcherSet{slices.Clone(r.watchers), slices.Clone(r.policyWatchers), slices.Clone(r.policyChangeWatchers)}
}

func (r *Registry) notify(t *Txn, w watcherSet) {
	for _, c := range t.certChanges {
		for _, fn := range w.certs {
			fn(c.id, c.status)
		}
	}
	if len(t.policyChanges) > 0 {
		for _, fn := range w.policies {
			fn()
		}
	}
	for _, c := range t.policyChanges {
		for _, fn := range w.policyChanges {
			fn(c)
		}
	}
}

// DescribeThing is Registry.DescribeThing inside the transaction.
func (t *Txn) DescribeThing(name string) (Thing, error) {
	var th Thing
	if err := getJSON(t.tx, thingsBucket, name, &th); err != nil {
		return Thing{}, fmt.Errorf("describe thing %q: %w", name, notFound(err))
	}
	return th, nil
}

// CreateThing is Registry.CreateThing inside the transaction.
func (t *Txn) CreateThing(name, typeName string, attrs map[string]string) (Thing, error) {
	if !ValidThingName(name) {
		return Thing{}, fmt.Errorf("create thing %q: name must match [a-zA-Z0-9:_-]{1,128}: %w", name, ErrInvalid)
	}
	if err := checkThingFields(typeName, attrs); err != nil {
		return Thing{}, fmt.Errorf("create thing %q: %w", name, err)
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	var existing Thing
	err := getJSON(t.tx, thingsBucket, name, &existing)
	if err == nil {
		if existing.TypeName == typeName && maps.Equal(existing.Attributes, attrs) {
			return existing, nil
		}
		return Thing{}, fmt.Errorf("create thing %q: exists with other attributes: %w", name, ErrExists)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return Thing{}, fmt.Errorf("create thing %q: %w", name, err)
	}
	now := t.r.now().UTC()
	out := Thing{
		Name:          name,
		ID:            newUUID(),
		ARN:           t.r.arn("thing", name),
		TypeName:      typeName,
		Attributes:    maps.Clone(attrs),
		Version:       1,
		CreatedAt:     now,
		LastUpdatedAt: now,
	}
	if err := putJSON(t.tx, thingsBucket, name, out); err != nil {
		return Thing{}, fmt.Errorf("create thing %q: %w", name, err)
	}
	return out, nil
}

// checkThingFields checks a thing type name ("" for none) and attributes.
func checkThingFields(typeName string, attrs map[string]string) error {
	if typeName != "" && !nameRE.MatchString(typeName) {
		return fmt.Errorf("thing type name %q: %w", typeName, ErrInvalid)
	}
	for k, v := range attrs {
		if !attrNameRE.MatchString(k) || !attrValueRE.MatchString(v) {
			return fmt.Errorf("attribute %q=%q: %w", k, v, ErrInvalid)
		}
	}
	return nil
}

// SetThingAttributes is Registry.SetThingAttributes inside the transaction.
func (t *Txn) SetThingAttributes(name, typeName string, attrs map[string]string) (Thing, error) {
	if err := checkThingFields(typeName, attrs); err != nil {
		return Thing{}, fmt.Errorf("set thing %q attributes: %w", name, err)
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	var out Thing
	if err := getJSON(t.tx, thingsBucket, name, &out); err != nil {
		return Thing{}, fmt.Errorf("set thing %q attributes: %w", name, notFound(err))
	}
	if out.TypeName == typeName && maps.Equal(out.Attributes, attrs) {
		return out, nil
	}
	out.TypeName = typeName
	out.Attributes = maps.Clone(attrs)
	out.Version++
	out.LastUpdatedAt = t.r.now().UTC()
	if err := putJSON(t.tx, thingsBucket, name, out); err != nil {
		return Thing{}, fmt.Errorf("set thing %q attributes: %w", name, err)
	}
	return out, nil
}

// RegisterCertificate is Registry.RegisterCertificate inside the
// transaction.
func (t *Txn) RegisterCertificate(certPEM []byte, status string) (Certificate, error) {
	c, err := t.r.newCertificate(certPEM, status)
	if err != nil {
		return Certificate{}, err
	}
	return c, t.putNewCertificate(c)
}

// newCertificate parses certPEM into a Certificate with the given status
// ("" means INACTIVE), not yet stored.
func (r *Registry) newCertificate(certPEM []byte, status string) (Certificate, error) {
	if status == "" {
		status = StatusInactive
	}
	if !knownStatus(status) {
		return Certificate{}, fmt.Errorf("register certificate: status %q: %w", status, ErrInvalid)
	}
	cert, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		return Certificate{}, fmt.Errorf("register certificate: %w: %w", ErrInvalid, err)
	}
	id := pki.CertificateID(cert.Raw)
	now := r.now().UTC()
	return Certificate{
		ID:        id,
		ARN:       r.arn("cert", id),
		Status:    status,
		PEM:       string(pkiPEM(cert.Raw)),
		NotBefore: cert.NotBefore.UTC(),
		NotAfter:  cert.NotAfter.UTC(),
		CreatedAt: now,
		UpdatedAt: now,
	}, nil
}

// putNewCertificate stores c, which must not be registered yet (ErrExists).
func (t *Txn) putNewCertificate(c Certificate) error {
	if _, err := t.tx.Get(certsBucket, c.ID); err == nil {
		return fmt.Errorf("register certificate %s: %w", c.ID, ErrExists)
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("register certificate %s: %w", c.ID, err)
	}
	if err := putJSON(t.tx, certsBucket, c.ID, c); err != nil {
		return fmt.Errorf("register certificate %s: %w", c.ID, err)
	}
	return nil
}

// DescribeCertificate is Registry.DescribeCertificate inside the
// transaction.
func (t *Txn) DescribeCertificate(id string) (Certificate, error) {
	if !certIDRE.MatchString(id) {
		return Certificate{}, fmt.Errorf("describe certificate %q: %w", id, ErrNotFound)
	}
	var c Certificate
	if err := getJSON(t.tx, certsBucket, id, &c); err != nil {
		return Certificate{}, fmt.Errorf("describe certificate %s: %w", id, notFound(err))
	}
	return c, nil
}

// SetCertificateStatus is Registry.SetCertificateStatus inside the
// transaction; the watchers hear of the change after the commit.
func (t *Txn) SetCertificateStatus(id, status string) error {
	if !knownStatus(status) {
		return fmt.Errorf("set certificate %s status: %q: %w", id, status, ErrInvalid)
	}
	return t.setStatus(id, status, false)
}

func (t *Txn) setStatus(id, status string, api bool) error {
	var c Certificate
	if err := getJSON(t.tx, certsBucket, id, &c); err != nil {
		return fmt.Errorf("update certificate %s: %w", id, notFound(err))
	}
	if c.Status == status {
		return nil
	}
	if c.Status == StatusRevoked {
		return fmt.Errorf("update certificate %s: REVOKED is terminal: %w", id, ErrCertificateState)
	}
	if api && c.Status == StatusPendingTransfer {
		return fmt.Errorf("update certificate %s: transfer pending: %w", id, ErrCertificateState)
	}
	c.Status = status
	c.UpdatedAt = t.r.now().UTC()
	if err := putJSON(t.tx, certsBucket, id, c); err != nil {
		return fmt.Errorf("update certificate %s: %w", id, err)
	}
	t.certChanges = append(t.certChanges, certChange{id, status})
	return nil
}

// AttachThingPrincipal is Registry.AttachThingPrincipal inside the
// transaction.
func (t *Txn) AttachThingPrincipal(thing, certID string) error {
	return t.changePrincipal(thing, certID, true)
}

func (t *Txn) changePrincipal(thing, certID string, attach bool) error {
	step := "attach"
	if !attach {
		step = "detach"
	}
	var th Thing
	if err := getJSON(t.tx, thingsBucket, thing, &th); err != nil {
		return fmt.Errorf("%s principal: thing %q: %w", step, thing, notFound(err))
	}
	var c Certificate
	if err := getJSON(t.tx, certsBucket, certID, &c); err != nil {
		return fmt.Errorf("%s principal: certificate %q: %w", step, certID, notFound(err))
	}
	if attach {
		th.Principals = addSorted(th.Principals, certID)
		c.Things = addSorted(c.Things, thing)
	} else {
		th.Principals = remove(th.Principals, certID)
		c.Things = remove(c.Things, thing)
	}
	if err := putJSON(t.tx, thingsBucket, thing, th); err != nil {
		return err
	}
	return putJSON(t.tx, certsBucket, certID, c)
}

// GetPolicy is Registry.GetPolicy inside the transaction.
func (t *Txn) GetPolicy(name string) (Policy, error) {
	var p Policy
	if err := getJSON(t.tx, policiesBucket, name, &p); err != nil {
		return Policy{}, fmt.Errorf("get policy %q: %w", name, notFound(err))
	}
	return p, nil
}

// CreatePolicy is Registry.CreatePolicy inside the transaction.
func (t *Txn) CreatePolicy(name, document string) (Policy, error) {
	p, err := t.r.newPolicy(name, document)
	if err != nil {
		return Policy{}, err
	}
	if _, err := t.tx.Get(policiesBucket, name); err == nil {
		return Policy{}, fmt.Errorf("create policy %q: %w", name, ErrExists)
	} else if !errors.Is(err, store.ErrNotFound) {
		return Policy{}, fmt.Errorf("create policy %q: %w", name, err)
	}
	if err := putJSON(t.tx, policiesBucket, name, p); err != nil {
		return Policy{}, fmt.Errorf("create policy %q: %w", name, err)
	}
	return p, nil
}

// AttachPolicy is Registry.AttachPolicy inside the transaction.
func (t *Txn) AttachPolicy(name, target string) error {
	return t.changePolicyTarget(name, target, true)
}

func (t *Txn) changePolicyTarget(name, target string, attach bool) error {
	step := "attach"
	if !attach {
		step = "detach"
	}
	if _, err := t.tx.Get(policiesBucket, name); err != nil {
		return fmt.Errorf("%s policy %q: %w", step, name, notFound(err))
	}
	if err := t.r.checkTarget(t.tx.Get, target); err != nil {
		return fmt.Errorf("%s policy %q: %w", step, name, err)
	}
	var names []string
	if err := getJSON(t.tx, policyTargetsBucket, target, &names); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s policy %q: %w", step, name, err)
	}
	if attach {
		if !slices.Contains(names, name) && len(names) >= MaxPoliciesPerTarget {
			return fmt.Errorf("%s policy %q: %s already has %d policies: %w", step, name, target, len(names), ErrLimitExceeded)
		}
		names = addSorted(names, name)
	} else {
		names = remove(names, name)
	}
	var err error
	if len(names) == 0 {
		err = t.tx.Delete(policyTargetsBucket, target)
	} else {
		err = putJSON(t.tx, policyTargetsBucket, target, names)
	}
	if err != nil {
		return fmt.Errorf("%s policy %q: %w", step, name, err)
	}
	t.policyChanges = append(t.policyChanges, t.r.targetChange(target))
	return nil
}

// AddThingToThingGroup is Registry.AddThingToThingGroup inside the
// transaction.
func (t *Txn) AddThingToThingGroup(group, thing string) error {
	return t.changeMembership(group, thing, true)
}

func (t *Txn) changeMembership(group, thing string, add bool) error {
	step := "add thing to thing group"
	if !add {
		step = "remove thing from thing group"
	}
	if _, err := t.tx.Get(groupsBucket, group); err != nil {
		return fmt.Errorf("%s: group %q: %w", step, group, notFound(err))
	}
	var th Thing
	if err := getJSON(t.tx, thingsBucket, thing, &th); err != nil {
		return fmt.Errorf("%s: thing %q: %w", step, thing, notFound(err))
	}
	m, err := membershipOf(t.tx.Get, th)
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	if add {
		if !slices.Contains(m.Groups, group) && len(m.Groups) >= MaxGroupsPerThing {
			return fmt.Errorf("%s: %q is already in %d groups: %w", step, thing, len(m.Groups), ErrInvalid)
		}
		m.Groups = addSorted(m.Groups, group)
	} else {
		m.Groups = remove(m.Groups, group)
	}
	if len(m.Groups) == 0 {
		err = t.tx.Delete(groupMembersBucket, thing)
	} else {
		err = putJSON(t.tx, groupMembersBucket, thing, m)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	t.policyChanges = append(t.policyChanges, PolicyChange{Thing: thing})
	return nil
}
