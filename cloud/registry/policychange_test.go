package registry

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWatchPolicyChanges: every attachment and membership change is
// reported once, after its commit, with the scope it can alter: its
// certificate, its thing, or everything for a thing group's policies;
// a failed change is not reported.
func TestWatchPolicyChanges(t *testing.T) {
	r, _ := newRegistry(t)
	if _, err := r.CreatePolicy("p", allowAllDoc); err != nil {
		t.Fatal(err)
	}
	c, err := r.RegisterCertificate(newCertPEM(t), StatusActive)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateThing("dev-1", "", nil); err != nil {
		t.Fatal(err)
	}
	g, err := r.CreateThingGroup("fleet", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []PolicyChange
	r.WatchPolicyChanges(func(c PolicyChange) { got = append(got, c) })
	for _, tc := range []struct {
		name string
		do   func() error
		want []PolicyChange
	}{
		{"attach to a certificate", func() error { return r.AttachPolicy("p", c.ARN) }, []PolicyChange{{CertificateID: c.ID}}},
		{"detach from a certificate", func() error { return r.DetachPolicy("p", c.ARN) }, []PolicyChange{{CertificateID: c.ID}}},
		{"attach to a thing group", func() error { return r.AttachPolicy("p", g.ARN) }, []PolicyChange{{}}},
		{"add a thing to a group", func() error { return r.AddThingToThingGroup("fleet", "dev-1") }, []PolicyChange{{Thing: "dev-1"}}},
		{"remove a thing from a group", func() error { return r.RemoveThingFromThingGroup("fleet", "dev-1") }, []PolicyChange{{Thing: "dev-1"}}},
		{"two changes in one transaction", func() error {
			return r.Update(func(tx *Txn) error {
				if err := tx.AttachPolicy("p", c.ARN); err != nil {
					return err
				}
				return tx.AddThingToThingGroup("fleet", "dev-1")
			})
		}, []PolicyChange{{CertificateID: c.ID}, {Thing: "dev-1"}}},
		{"failed attachment", func() error { _ = r.AttachPolicy("nope", c.ARN); return nil }, nil},
		{"a certificate status change", func() error { return r.SetCertificateStatus(c.ID, StatusInactive) }, nil},
	} {
		got = nil
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: changes (-want +got):\n%s", tc.name, diff)
		}
	}
}
