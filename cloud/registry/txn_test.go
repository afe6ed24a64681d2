package registry

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestUpdateIsAllOrNothing: the changes of a failed Update are all
// discarded and its watchers are not called; a committed one calls them
// once per change, after the commit.
func TestUpdateIsAllOrNothing(t *testing.T) {
	r, _ := newRegistry(t)
	if _, err := r.CreatePolicy("p", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`); err != nil {
		t.Fatal(err)
	}
	var heard []string
	r.WatchCertificates(func(id, status string) { heard = append(heard, status) })
	r.WatchPolicies(func() { heard = append(heard, "policies") })
	provision := func(t *Txn, thing string, certPEM []byte, fail error) error {
		c, err := t.RegisterCertificate(certPEM, StatusPendingActivation)
		if err != nil {
			return err
		}
		if _, err := t.CreateThing(thing, "", nil); err != nil {
			return err
		}
		if err := t.AttachThingPrincipal(thing, c.ID); err != nil {
			return err
		}
		if err := t.AttachPolicy("p", c.ARN); err != nil {
			return err
		}
		if err := t.SetCertificateStatus(c.ID, StatusActive); err != nil {
			return err
		}
		return fail
	}

	boom := errors.New("boom")
	certPEM := newCertPEM(t)
	if err := r.Update(func(t *Txn) error { return provision(t, "dev-1", certPEM, boom) }); !errors.Is(err, boom) {
		t.Fatalf("Update: %v, want boom", err)
	}
	if _, err := r.DescribeThing("dev-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("thing after a failed Update: %v, want ErrNotFound", err)
	}
	if cs, _ := r.ListCertificates(); len(cs) != 0 {
		t.Errorf("certificates after a failed Update: %d, want 0", len(cs))
	}
	if len(heard) != 0 {
		t.Errorf("watchers called for a failed Update: %v", heard)
	}

	if err := r.Update(func(t *Txn) error { return provision(t, "dev-1", certPEM, nil) }); err != nil {
		t.Fatal(err)
	}
	th, err := r.DescribeThing("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.DescribeCertificate(th.Principals[0])
	if err != nil {
		t.Fatal(err)
	}
	ps, err := r.AttachedPolicies(c.ARN)
	if err != nil || len(ps) != 1 {
		t.Errorf("attached policies: %v, %v", ps, err)
	}
	if diff := cmp.Diff([]string{"dev-1"}, c.Things); diff != "" || c.Status != StatusActive {
		t.Errorf("certificate %s, things (-want +got):\n%s", c.Status, diff)
	}
	if diff := cmp.Diff([]string{StatusActive, "policies"}, heard); diff != "" {
		t.Errorf("watchers (-want +got):\n%s", diff)
	}
}

// TestTxnFailedStepChangesNothing: a Txn method that fails leaves the
// transaction as it was, so the caller may carry on after an expected
// error.
func TestTxnFailedStepChangesNothing(t *testing.T) {
	r, _ := newRegistry(t)
	const doc = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`
	if _, err := r.CreatePolicy("p", doc); err != nil {
		t.Fatal(err)
	}
	err := r.Update(func(t *Txn) error {
		if _, err := t.CreatePolicy("p", `{"other":true}`); !errors.Is(err, ErrMalformedPolicy) {
			return err
		}
		if _, err := t.CreatePolicy("p", doc); !errors.Is(err, ErrExists) {
			return err
		}
		if err := t.AddThingToThingGroup("nope", "dev"); !errors.Is(err, ErrNotFound) {
			return err
		}
		_, err := t.CreateThing("dev", "", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.DescribeThing("dev"); err != nil {
		t.Errorf("thing: %v", err)
	}
	if p, err := r.GetPolicy("p"); err != nil || p.Document != doc {
		t.Errorf("policy: %+v, %v", p, err)
	}
}

// TestBatchConcurrentCallers: callers that share a batch each get their own
// outcome; the one that fails leaves nothing, the others are stored.
func TestBatchConcurrentCallers(t *testing.T) {
	r, _ := newRegistry(t)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.Batch(func(t *Txn) error {
				if _, err := t.CreateThing(fmt.Sprintf("dev-%d", i), "", nil); err != nil {
					return err
				}
				if i == 3 {
					return errBoom
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		_, derr := r.DescribeThing(fmt.Sprintf("dev-%d", i))
		if i == 3 {
			if !errors.Is(err, errBoom) || !errors.Is(derr, ErrNotFound) {
				t.Errorf("failing caller: err %v, thing %v; want boom and ErrNotFound", err, derr)
			}
			continue
		}
		if err != nil || derr != nil {
			t.Errorf("caller %d: err %v, thing %v", i, err, derr)
		}
	}
}

var errBoom = errors.New("boom")
