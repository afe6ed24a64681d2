package registry

import (
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotagent/iotagent/cloud/store"
)

// Bucket names in the store.
const (
	thingsBucket = "registry.things"
	certsBucket  = "registry.certificates"
)

// ErrConflict: the resource is still in use (a thing with attached
// principals, an ACTIVE or attached certificate).
var ErrConflict = errors.New("registry: resource is in use")

var (
	nameRE      = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
	attrNameRE  = regexp.MustCompile(`^[a-zA-Z0-9_.,@/:#-]{1,128}$`)
	attrValueRE = regexp.MustCompile(`^[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}$`)
	certIDRE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Registry holds things and certificates. It is safe for concurrent use.
type Registry struct {
	db      *store.DB
	region  string
	account string
	now     func() time.Time

	mu       sync.Mutex // serialises read-modify-write and guards watchers
	watchers []func(id, status string)
	// policyWatchers are told about changes to policies, their attachments
	// and thing groups (policies.go).
	policyWatchers []func()
	// policyChangeWatchers hear of the same changes, each with its scope.
	policyChangeWatchers []func(PolicyChange)

	templates   sync.Map // template name -> *decodedTemplate (templates.go)
	policies    sync.Map // policy name -> *decodedPolicy (policies.go)
	policyCount atomic.Int64
}

// New returns a registry over db. now is the clock for timestamps (nil:
// time.Now).
func New(db *store.DB, region, account string, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{db: db, region: region, account: account, now: now}
}

// Region returns the AWS region used in ARNs.
func (r *Registry) Region() string { return r.region }

// Account returns the AWS account id used in ARNs.
func (r *Registry) Account() string { return r.account }

func (r *Registry) arn(kind, name string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:%s/%s", r.region, r.account, kind, name)
}

// ValidThingName reports whether name satisfies AWS's thing name rule,
// [a-zA-Z0-9:_-]{1,128}.
func ValidThingName(name string) bool { return nameRE.MatchString(name) }

// CreateThing creates a thing. Like AWS it is idempotent: creating a thing
// that exists with the same type and attributes returns it; with other ones
// it fails with ErrExists. Invalid names and attributes give ErrInvalid.
func (r *Registry) CreateThing(name, typeName string, attrs map[string]string) (Thing, error) {
	var out Thing
	err := r.Update(func(t *Txn) (err error) {
		out, err = t.CreateThing(name, typeName, attrs)
		return err
	})
	return out, err
}

// DescribeThing returns the thing or ErrNotFound.
func (r *Registry) DescribeThing(name string) (Thing, error) {
	var t Thing
	if err := r.db.GetJSON(thingsBucket, name, &t); err != nil {
		return Thing{}, fmt.Errorf("describe thing %q: %w", name, notFound(err))
	}
	return t, nil
}

// ListThings returns every thing, ordered by name.
func (r *Registry) ListThings() ([]Thing, error) {
	var out []Thing
	err := r.db.ForEach(thingsBucket, "", func(_ string, v []byte) error {
		var t Thing
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list things: %w", err)
	}
	return out, nil
}

// DeleteThing deletes a thing. As on AWS, deleting a thing that does not
// exist succeeds, and a thing with attached principals cannot be deleted
// (ErrConflict).
func (r *Registry) DeleteThing(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.db.Update(func(tx *store.Tx) error {
		var t Thing
		err := getJSON(tx, thingsBucket, name, &t)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete thing %q: %w", name, err)
		}
		if len(t.Principals) > 0 {
			return fmt.Errorf("delete thing %q: still attached to %d principal(s): %w", name, len(t.Principals), ErrConflict)
		}
		return tx.Delete(thingsBucket, name)
	})
}

// RegisterCertificate registers a PEM certificate with the given status
// (empty means INACTIVE, AWS's default). Its id is CertificateID of the DER.
// A certificate already registered gives ErrExists; bad PEM or an unknown
// status gives ErrInvalid.
func (r *Registry) RegisterCertificate(certPEM []byte, status string) (Certificate, error) {
	c, err := r.newCertificate(certPEM, status)
	if err != nil {
		return Certificate{}, err
	}
	if err := r.Update(func(t *Txn) error { return t.putNewCertificate(c) }); err != nil {
		return Certificate{}, err
	}
	return c, nil
}

// DescribeCertificate returns the certificate or ErrNotFound.
func (r *Registry) DescribeCertificate(id string) (Certificate, error) {
	if !certIDRE.MatchString(id) {
		return Certificate{}, fmt.Errorf("describe certificate %q: %w", id, ErrNotFound)
	}
	var c Certificate
	if err := r.db.GetJSON(certsBucket, id, &c); err != nil {
		return Certificate{}, fmt.Errorf("describe certificate %s: %w", id, notFound(err))
	}
	return c, nil
}

// ListCertificates returns every certificate, ordered by id.
func (r *Registry) ListCertificates() ([]Certificate, error) {
	var out []Certificate
	err := r.db.ForEach(certsBucket, "", func(_ string, v []byte) error {
		var c Certificate
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	return out, nil
}

// UpdateCertificate changes a certificate's status. REVOKED is terminal
// (ErrCertificateState); PENDING_TRANSFER, PENDING_ACTIVATION and the
// deprecated REGISTER_INACTIVE cannot be set through the API (ErrInvalid).
// Watchers are called after a change is stored.
func (r *Registry) UpdateCertificate(id, status string) error {
	switch status {
	case StatusActive, StatusInactive, StatusRevoked:
	default:
		return fmt.Errorf("update certificate %s: status %q cannot be set: %w", id, status, ErrInvalid)
	}
	return r.setStatus(id, status, true)
}

// SetCertificateStatus sets any known status, including the PENDING_* ones
// that only AWS itself sets (JITR, fleet provisioning). REVOKED stays
// terminal. Watchers are called after a change.
func (r *Registry) SetCertificateStatus(id, status string) error {
	if !knownStatus(status) {
		return fmt.Errorf("set certificate %s status: %q: %w", id, status, ErrInvalid)
	}
	return r.setStatus(id, status, false)
}

func (r *Registry) setStatus(id, status string, api bool) error {
	return r.Update(func(t *Txn) error { return t.setStatus(id, status, api) })
}

// DeleteCertificate deletes a certificate. Like AWS it refuses an ACTIVE
// certificate (ErrCertificateState) and one still attached to a thing
// (ErrConflict).
func (r *Registry) DeleteCertificate(id string) error {
	return r.deleteCertificate(id, false)
}

// ForceDeleteCertificate is DeleteCertificate that first detaches the
// certificate's policies (AWS's forceDelete); a certificate that is ACTIVE
// or attached to a thing still cannot be deleted.
func (r *Registry) ForceDeleteCertificate(id string) error {
	return r.deleteCertificate(id, true)
}

func (r *Registry) deleteCertificate(id string, force bool) error {
	return r.Update(func(t *Txn) error {
		var c Certificate
		if err := getJSON(t.tx, certsBucket, id, &c); err != nil {
			return fmt.Errorf("delete certificate %s: %w", id, notFound(err))
		}
		if c.Status == StatusActive {
			return fmt.Errorf("delete certificate %s: ACTIVE: %w", id, ErrCertificateState)
		}
		if len(c.Things) > 0 {
			return fmt.Errorf("delete certificate %s: attached to %v: %w", id, c.Things, ErrConflict)
		}
		var policies []string
		if err := getJSON(t.tx, policyTargetsBucket, c.ARN, &policies); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete certificate %s: %w", id, err)
		}
		if len(policies) > 0 {
			if !force {
				return fmt.Errorf("delete certificate %s: policies %v are attached: %w", id, policies, ErrConflict)
			}
			if err := t.tx.Delete(policyTargetsBucket, c.ARN); err != nil {
				return fmt.Errorf("delete certificate %s: %w", id, err)
			}
			t.policyChanges = append(t.policyChanges, t.r.targetChange(c.ARN))
		}
		return t.tx.Delete(certsBucket, id)
	})
}

// WatchCertificates registers fn to be called after every certificate
// status change, outside the registry's lock. fn must not block for long.
func (r *Registry) WatchCertificates(fn func(id, status string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchers = append(r.watchers, fn)
}

// AttachThingPrincipal attaches a certificate to a thing. Both must exist
// (ErrNotFound). Attaching twice is not an error.
func (r *Registry) AttachThingPrincipal(thing, certID string) error {
	return r.changePrincipal(thing, certID, true)
}

// DetachThingPrincipal detaches a certificate from a thing. Both must exist
// (ErrNotFound); detaching what is not attached is not an error.
func (r *Registry) DetachThingPrincipal(thing, certID string) error {
	return r.changePrincipal(thing, certID, false)
}

func (r *Registry) changePrincipal(thing, certID string, attach bool) error {
	return r.Update(func(t *Txn) error { return t.changePrincipal(thing, certID, attach) })
}

// ThingsForCertificate returns the names of the things the certificate is
// attached to (ErrNotFound if it is not registered).
func (r *Registry) ThingsForCertificate(certID string) ([]string, error) {
	c, err := r.DescribeCertificate(certID)
	if err != nil {
		return nil, err
	}
	return c.Things, nil
}

// ThingPrincipals returns the ids of the certificates attached to the thing
// (ErrNotFound if there is no such thing).
func (r *Registry) ThingPrincipals(thing string) ([]string, error) {
	t, err := r.DescribeThing(thing)
	if err != nil {
		return nil, err
	}
	return t.Principals, nil
}

func knownStatus(s string) bool {
	switch s {
	case StatusActive, StatusInactive, StatusRevoked, StatusPendingActivation, StatusPendingTransfer, StatusRegisterInactive:
		return true
	}
	return false
}

func notFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	return err
}

func getJSON(tx *store.Tx, bucket, key string, v any) error {
	b, err := tx.Get(bucket, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return nil
}

func putJSON(tx *store.Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return tx.Put(bucket, key, b)
}

func addSorted(s []string, v string) []string {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

func remove(s []string, v string) []string {
	s = slices.DeleteFunc(s, func(x string) bool { return x == v })
	if len(s) == 0 {
		return nil
	}
	return s
}

// newUUID returns a random (version 4) UUID, the form AWS uses for thingId.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func pkiPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
