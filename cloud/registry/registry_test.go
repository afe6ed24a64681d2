package registry

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/store"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func openDB(t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newRegistry(t *testing.T) (*Registry, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sim.db")
	return New(openDB(t, path), "eu-central-1", "123456789012", func() time.Time { return t0 }), path
}

var (
	caOnce sync.Once
	testCA *pki.CA
)

func newCertPEM(t testing.TB) []byte {
	t.Helper()
	caOnce.Do(func() {
		var err error
		testCA, err = pki.LoadOrCreateCA(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
	})
	certPEM, _, err := testCA.NewKeysAndCertificate("dev")
	if err != nil {
		t.Fatal(err)
	}
	return certPEM
}

func TestThingCRUD(t *testing.T) {
	r, _ := newRegistry(t)
	th, err := r.CreateThing("pi-1", "sensor", map[string]string{"room": "kitchen"})
	if err != nil {
		t.Fatal(err)
	}
	want := Thing{
		Name: "pi-1", ARN: "arn:aws:iot:eu-central-1:123456789012:thing/pi-1", TypeName: "sensor",
		Attributes: map[string]string{"room": "kitchen"}, Version: 1, CreatedAt: t0, LastUpdatedAt: t0,
	}
	if diff := cmp.Diff(want, th, cmpopts.IgnoreFields(Thing{}, "ID")); diff != "" {
		t.Errorf("CreateThing (-want +got):\n%s", diff)
	}
	if len(th.ID) != 36 || strings.Count(th.ID, "-") != 4 || th.ID[14] != '4' {
		t.Errorf("thingId %q is not a v4 uuid", th.ID)
	}

	// Idempotent when identical, ErrExists when different.
	again, err := r.CreateThing("pi-1", "sensor", map[string]string{"room": "kitchen"})
	if err != nil || again.ID != th.ID {
		t.Errorf("identical CreateThing: %v, id %s want %s", err, again.ID, th.ID)
	}
	if _, err := r.CreateThing("pi-1", "sensor", map[string]string{"room": "hall"}); !errors.Is(err, ErrExists) {
		t.Errorf("different CreateThing: %v, want ErrExists", err)
	}

	got, err := r.DescribeThing("pi-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(th, got); diff != "" {
		t.Errorf("DescribeThing (-want +got):\n%s", diff)
	}
	if _, err := r.CreateThing("pi-0", "", nil); err != nil {
		t.Fatal(err)
	}
	list, err := r.ListThings()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range list {
		names = append(names, x.Name)
	}
	if diff := cmp.Diff([]string{"pi-0", "pi-1"}, names); diff != "" {
		t.Errorf("ListThings (-want +got):\n%s", diff)
	}
	if err := r.DeleteThing("pi-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.DescribeThing("pi-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DescribeThing after delete: %v, want ErrNotFound", err)
	}
	if err := r.DeleteThing("pi-1"); err != nil {
		t.Errorf("deleting a missing thing: %v, want nil (AWS)", err)
	}
}

func TestThingNameRules(t *testing.T) {
	r, _ := newRegistry(t)
	for _, tc := range []struct {
		name  string
		attrs map[string]string
		ok    bool
	}{
		{"a", nil, true},
		{"A-b_c:9", nil, true},
		{strings.Repeat("x", 128), nil, true},
		{strings.Repeat("x", 129), nil, false},
		{"", nil, false},
		{"has space", nil, false},
		{"slash/no", nil, false},
		{"$aws", nil, false},
		{"ok-attrs", map[string]string{"k": "v=1"}, true},
		{"bad-attr", map[string]string{"k k": "v"}, false},
		{"bad-value", map[string]string{"k": strings.Repeat("v", 801)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.CreateThing(tc.name, "", tc.attrs)
			if tc.ok && err != nil {
				t.Errorf("CreateThing: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalid) {
				t.Errorf("CreateThing: %v, want ErrInvalid", err)
			}
		})
	}
}

func TestCertificateLifecycle(t *testing.T) {
	r, _ := newRegistry(t)
	certPEM := newCertPEM(t)
	c, err := r.RegisterCertificate(certPEM, "")
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := pki.ParseCertificatePEM(certPEM)
	wantID := pki.CertificateID(parsed.Raw)
	if c.ID != wantID || c.Status != StatusInactive || c.ARN != "arn:aws:iot:eu-central-1:123456789012:cert/"+wantID {
		t.Errorf("registered %+v", c)
	}
	if !c.NotAfter.Equal(pki.AWSNotAfter) {
		t.Errorf("notAfter %v", c.NotAfter)
	}
	if _, err := r.RegisterCertificate(certPEM, StatusActive); !errors.Is(err, ErrExists) {
		t.Errorf("second register: %v, want ErrExists", err)
	}
	if _, err := r.RegisterCertificate([]byte("junk"), StatusActive); !errors.Is(err, ErrInvalid) {
		t.Errorf("junk PEM: %v, want ErrInvalid", err)
	}
	if _, err := r.RegisterCertificate(newCertPEM(t), "BOGUS"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad status: %v, want ErrInvalid", err)
	}

	var mu sync.Mutex
	var events []string
	r.WatchCertificates(func(id, status string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, id[:8]+" "+status)
	})

	for _, step := range []struct {
		status string
		want   error
	}{
		{StatusActive, nil},
		{StatusActive, nil}, // no change, no event
		{StatusPendingActivation, ErrInvalid},
		{StatusPendingTransfer, ErrInvalid},
		{StatusRegisterInactive, ErrInvalid},
		{"", ErrInvalid},
		{StatusInactive, nil},
		{StatusActive, nil},
		{StatusRevoked, nil},
		{StatusActive, ErrCertificateState},
		{StatusInactive, ErrCertificateState},
	} {
		err := r.UpdateCertificate(c.ID, step.status)
		if !errors.Is(err, step.want) || (step.want == nil && err != nil) {
			t.Errorf("UpdateCertificate(%s): %v, want %v", step.status, err, step.want)
		}
	}
	p := c.ID[:8] + " "
	if diff := cmp.Diff([]string{p + "ACTIVE", p + "INACTIVE", p + "ACTIVE", p + "REVOKED"}, events); diff != "" {
		t.Errorf("watcher events (-want +got):\n%s", diff)
	}
	got, err := r.DescribeCertificate(c.ID)
	if err != nil || got.Status != StatusRevoked {
		t.Errorf("DescribeCertificate: %v %v", got.Status, err)
	}
	if err := r.UpdateCertificate(strings.Repeat("0", 64), StatusActive); !errors.Is(err, ErrNotFound) {
		t.Errorf("update unknown: %v, want ErrNotFound", err)
	}
	if _, err := r.DescribeCertificate("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("describe bad id: %v, want ErrNotFound", err)
	}

	// Internal status changes (JITR, fleet provisioning).
	c2, err := r.RegisterCertificate(newCertPEM(t), StatusPendingActivation)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetCertificateStatus(c2.ID, StatusActive); err != nil {
		t.Errorf("SetCertificateStatus: %v", err)
	}
	list, err := r.ListCertificates()
	if err != nil || len(list) != 2 {
		t.Errorf("ListCertificates: %d, %v", len(list), err)
	}
}

func TestPrincipalsAndPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sim.db")
	db, err := store.Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := New(db, "us-east-1", "000000000000", nil)
	if _, err := r.CreateThing("t1", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateThing("t2", "", nil); err != nil {
		t.Fatal(err)
	}
	c, err := r.RegisterCertificate(newCertPEM(t), StatusActive)
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range []string{"t2", "t1", "t1"} {
		if err := r.AttachThingPrincipal(th, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.AttachThingPrincipal("nope", c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("attach to missing thing: %v", err)
	}
	if err := r.AttachThingPrincipal("t1", strings.Repeat("a", 64)); !errors.Is(err, ErrNotFound) {
		t.Errorf("attach missing cert: %v", err)
	}
	if err := r.DeleteThing("t1"); !errors.Is(err, ErrConflict) {
		t.Errorf("delete attached thing: %v, want ErrConflict", err)
	}
	if err := r.DeleteCertificate(c.ID); !errors.Is(err, ErrCertificateState) {
		t.Errorf("delete ACTIVE cert: %v, want ErrCertificateState", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen: everything is still there.
	r = New(openDB(t, path), "us-east-1", "000000000000", nil)
	things, err := r.ThingsForCertificate(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"t1", "t2"}, things); diff != "" {
		t.Errorf("ThingsForCertificate after reopen (-want +got):\n%s", diff)
	}
	pr, err := r.ThingPrincipals("t1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{c.ID}, pr); diff != "" {
		t.Errorf("ThingPrincipals (-want +got):\n%s", diff)
	}
	if err := r.DetachThingPrincipal("t1", c.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.DetachThingPrincipal("t1", c.ID); err != nil {
		t.Errorf("second detach: %v", err)
	}
	things, _ = r.ThingsForCertificate(c.ID)
	if diff := cmp.Diff([]string{"t2"}, things); diff != "" {
		t.Errorf("after detach (-want +got):\n%s", diff)
	}
	if err := r.DeleteThing("t1"); err != nil {
		t.Errorf("delete detached thing: %v", err)
	}
	if err := r.DetachThingPrincipal("t2", c.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.UpdateCertificate(c.ID, StatusInactive); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteCertificate(c.ID); err != nil {
		t.Errorf("delete inactive detached cert: %v", err)
	}
	if _, err := r.ThingsForCertificate(c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if _, err := r.ThingPrincipals("t1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("principals of deleted thing: %v", err)
	}
}

func FuzzRegisterCertificate(f *testing.F) {
	f.Add(newCertPEM(f))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	r := New(openDB(f, filepath.Join(f.TempDir(), "f.db")), "r", "a", nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := r.RegisterCertificate(b, StatusActive)
		if err == nil && len(c.ID) != 64 {
			t.Fatalf("id %q", c.ID)
		}
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExists) {
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}
