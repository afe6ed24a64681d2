package registry

import (
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/policy"
	"github.com/iotagent/iotagent/cloud/store"
)

const allowAllDoc = `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}`

func names(ps []Policy) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestPolicies(t *testing.T) {
	r, _ := newRegistry(t)
	var changes atomic.Int32
	r.WatchPolicies(func() { changes.Add(1) })

	p, err := r.CreatePolicy("dev.ice@1", allowAllDoc)
	if err != nil {
		t.Fatal(err)
	}
	want := Policy{Name: "dev.ice@1", ARN: "arn:aws:iot:eu-central-1:123456789012:policy/dev.ice@1", Document: allowAllDoc, DefaultVersionID: "1", CreatedAt: t0}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("CreatePolicy (-want +got):\n%s", diff)
	}
	if got, err := r.GetPolicy("dev.ice@1"); err != nil || !cmp.Equal(got, want) {
		t.Errorf("GetPolicy = %+v, %v", got, err)
	}
	for _, tc := range []struct {
		name, doc string
		want      error
	}{
		{"dev.ice@1", allowAllDoc, ErrExists},
		{"has space", allowAllDoc, ErrInvalid},
		{strings.Repeat("p", 129), allowAllDoc, ErrInvalid},
		{"bad", `{"Statement":`, ErrMalformedPolicy},
		{"bad2", `{"Version":"2012-10-17","Statement":{"Effect":"Maybe","Action":"iot:*","Resource":"*"}}`, ErrMalformedPolicy},
	} {
		if _, err := r.CreatePolicy(tc.name, tc.doc); !errors.Is(err, tc.want) {
			t.Errorf("CreatePolicy(%.20s): %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := r.CreatePolicy("bad", "{}"); !errors.Is(err, policy.ErrMalformed) {
		t.Errorf("malformed error does not wrap policy.ErrMalformed: %v", err)
	}
	if _, err := r.GetPolicy("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetPolicy(nope): %v", err)
	}

	c, err := r.RegisterCertificate(newCertPEM(t), StatusActive)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateThing("box", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreatePolicy("group-pol", allowAllDoc); err != nil {
		t.Fatal(err)
	}
	g, err := r.CreateThingGroup("boxes", map[string]string{"site": "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy, target string
		want           error
	}{
		{"dev.ice@1", c.ARN, nil},
		{"dev.ice@1", c.ARN, nil}, // twice is fine
		{"group-pol", g.ARN, nil},
		{"nope", c.ARN, ErrNotFound},
		{"dev.ice@1", "arn:aws:iot:eu-central-1:123456789012:cert/" + strings.Repeat("0", 64), ErrNotFound},
		{"dev.ice@1", "arn:aws:iot:eu-central-1:123456789012:thinggroup/none", ErrNotFound},
		{"dev.ice@1", "arn:aws:iot:us-west-2:123456789012:cert/" + c.ID, ErrNotFound},
		{"dev.ice@1", "arn:aws:iot:eu-central-1:123456789012:thing/box", ErrInvalid},
		{"dev.ice@1", "eu-central-1:cognito-id", ErrInvalid},
	} {
		err := r.AttachPolicy(tc.policy, tc.target)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("AttachPolicy(%s, %s): %v, want %v", tc.policy, tc.target, err, tc.want)
		}
	}
	if n := changes.Load(); n != 3 {
		t.Errorf("%d policy change notifications, want 3", n)
	}
	got, err := r.AttachedPolicies(c.ARN)
	if err != nil || !cmp.Equal(names(got), []string{"dev.ice@1"}) {
		t.Errorf("AttachedPolicies(cert) = %v, %v", names(got), err)
	}

	// Effective: the certificate's own, plus the groups' of the thing.
	eff, err := r.EffectivePolicies(c.ID, "box")
	if err != nil || !cmp.Equal(names(eff), []string{"dev.ice@1"}) {
		t.Errorf("EffectivePolicies before group = %v, %v", names(eff), err)
	}
	if err := r.AddThingToThingGroup("boxes", "box"); err != nil {
		t.Fatal(err)
	}
	eff, err = r.EffectivePolicies(c.ID, "box")
	if err != nil || !cmp.Equal(names(eff), []string{"dev.ice@1", "group-pol"}) {
		t.Errorf("EffectivePolicies with group = %v, %v", names(eff), err)
	}
	eff, _ = r.EffectivePolicies(c.ID, "")
	if !cmp.Equal(names(eff), []string{"dev.ice@1"}) {
		t.Errorf("EffectivePolicies without thing = %v", names(eff))
	}
	if _, err := r.EffectivePolicies(strings.Repeat("1", 64), ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("EffectivePolicies(unknown cert): %v", err)
	}

	if err := r.DetachPolicy("dev.ice@1", c.ARN); err != nil {
		t.Fatal(err)
	}
	if err := r.DetachPolicy("dev.ice@1", c.ARN); err != nil {
		t.Errorf("second detach: %v", err)
	}
	eff, _ = r.EffectivePolicies(c.ID, "box")
	if !cmp.Equal(names(eff), []string{"group-pol"}) {
		t.Errorf("after detach = %v", names(eff))
	}

	// At most 10 policies on one target.
	for i := range MaxPoliciesPerTarget + 1 {
		n := "p" + string(rune('a'+i))
		if _, err := r.CreatePolicy(n, allowAllDoc); err != nil {
			t.Fatal(err)
		}
		err := r.AttachPolicy(n, c.ARN)
		if i < MaxPoliciesPerTarget && err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		if i == MaxPoliciesPerTarget && !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("attach 11th: %v, want ErrLimitExceeded", err)
		}
	}
	all, err := r.ListPolicies()
	if err != nil || len(all) != 2+MaxPoliciesPerTarget+1 {
		t.Errorf("ListPolicies: %d, %v", len(all), err)
	}
}

func TestThingGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sim.db")
	db, err := store.Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := New(db, "us-east-1", "123456789012", nil)
	g, err := r.CreateThingGroup("g1", map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if g.ARN != "arn:aws:iot:us-east-1:123456789012:thinggroup/g1" || len(g.ID) != 36 || g.Version != 1 {
		t.Errorf("group %+v", g)
	}
	again, err := r.CreateThingGroup("g1", map[string]string{"k": "v"})
	if err != nil || again.ID != g.ID {
		t.Errorf("idempotent create: %v %v", again.ID, err)
	}
	if _, err := r.CreateThingGroup("g1", nil); !errors.Is(err, ErrExists) {
		t.Errorf("create with other attributes: %v", err)
	}
	if _, err := r.CreateThingGroup("bad name", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := r.CreateThingGroup("g2", map[string]string{"k k": "v"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad attribute: %v", err)
	}
	if _, err := r.CreateThing("t", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.AddThingToThingGroup("g1", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown thing: %v", err)
	}
	if err := r.AddThingToThingGroup("nope", "t"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown group: %v", err)
	}
	for i := range MaxGroupsPerThing + 1 {
		name := "grp" + string(rune('a'+i))
		if _, err := r.CreateThingGroup(name, nil); err != nil {
			t.Fatal(err)
		}
		err := r.AddThingToThingGroup(name, "t")
		if i < MaxGroupsPerThing && err != nil {
			t.Fatal(err)
		}
		if i == MaxGroupsPerThing && !errors.Is(err, ErrInvalid) {
			t.Errorf("11th group: %v, want ErrInvalid", err)
		}
	}
	if err := r.RemoveThingFromThingGroup("grpa", "t"); err != nil {
		t.Fatal(err)
	}
	if err := r.AddThingToThingGroup("g1", "t"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	r = New(openDB(t, path), "us-east-1", "123456789012", nil)
	groups, err := r.ThingGroupsOf("t")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"g1", "grpb", "grpc", "grpd", "grpe", "grpf", "grpg", "grph", "grpi", "grpj"}
	if diff := cmp.Diff(want, groups); diff != "" {
		t.Errorf("ThingGroupsOf after reopen (-want +got):\n%s", diff)
	}
	if _, err := r.ThingGroupsOf("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ThingGroupsOf(nope): %v", err)
	}
	// A thing deleted and created again starts in no group.
	if err := r.DeleteThing("t"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateThing("t", "", nil); err != nil {
		t.Fatal(err)
	}
	if groups, err := r.ThingGroupsOf("t"); err != nil || len(groups) != 0 {
		t.Errorf("groups of a new thing with an old name: %v, %v", groups, err)
	}
	list, err := r.ListThingGroups()
	if err != nil || len(list) != 1+MaxGroupsPerThing+1 {
		t.Errorf("ListThingGroups: %d %v", len(list), err)
	}
	if d, err := r.DescribeThingGroup("g1"); err != nil || d.ID != g.ID {
		t.Errorf("DescribeThingGroup: %+v %v", d, err)
	}
}

func TestCACertificates(t *testing.T) {
	r, _ := newRegistry(t)
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A certificate signed by an unregistered CA cannot be registered.
	devPEM, _, err := ca.NewKeysAndCertificate("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RegisterCertificateWithCA(devPEM, StatusActive); !errors.Is(err, ErrCertificateValidation) {
		t.Errorf("no CA registered: %v, want ErrCertificateValidation", err)
	}
	// A device certificate is not a CA.
	if _, err := r.RegisterCACertificate(devPEM, true, false, ""); !errors.Is(err, ErrCertificateValidation) {
		t.Errorf("device cert as CA: %v", err)
	}
	if _, err := r.RegisterCACertificate([]byte("junk"), true, false, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("junk CA: %v", err)
	}
	// An INACTIVE CA does not vouch for its certificates.
	rc, err := r.RegisterCACertificate(ca.CertPEM, false, true, `{"Resources":{}}`)
	if err != nil {
		t.Fatal(err)
	}
	id := pki.CertificateID(ca.Cert.Raw)
	want := CACertificate{
		ID: id, ARN: "arn:aws:iot:eu-central-1:123456789012:cacert/" + id, Status: StatusInactive,
		PEM: string(ca.CertPEM), AutoRegistrationStatus: AutoRegistrationEnable, TemplateBody: `{"Resources":{}}`,
		NotBefore: ca.Cert.NotBefore.UTC(), NotAfter: ca.Cert.NotAfter.UTC(), CreatedAt: t0, UpdatedAt: t0,
	}
	if diff := cmp.Diff(want, rc); diff != "" {
		t.Errorf("RegisterCACertificate (-want +got):\n%s", diff)
	}
	if _, err := r.RegisterCACertificate(ca.CertPEM, true, false, ""); !errors.Is(err, ErrExists) {
		t.Errorf("second registration: %v", err)
	}
	if _, err := r.RegisterCertificateWithCA(devPEM, StatusActive); !errors.Is(err, ErrCertificateValidation) {
		t.Errorf("INACTIVE CA: %v, want ErrCertificateValidation", err)
	}

	ca2, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RegisterCACertificate(ca2.CertPEM, true, false, ""); err != nil {
		t.Fatal(err)
	}
	dev2PEM, _, err := ca2.NewKeysAndCertificate("dev-2")
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.RegisterCertificateWithCA(dev2PEM, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.CAID != pki.CertificateID(ca2.Cert.Raw) || c.Status != StatusInactive {
		t.Errorf("registered %+v", c)
	}
	if _, err := r.RegisterCertificateWithCA(dev2PEM, StatusActive); !errors.Is(err, ErrExists) {
		t.Errorf("again: %v", err)
	}
	if _, err := r.RegisterCertificateWithCA(dev2PEM, "NOPE"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad status: %v", err)
	}
	got, err := r.DescribeCertificate(c.ID)
	if err != nil || got.CAID != c.CAID {
		t.Errorf("DescribeCertificate: %+v %v", got, err)
	}
	if d, err := r.DescribeCACertificate(id); err != nil || d.ID != id {
		t.Errorf("DescribeCACertificate: %v", err)
	}
	if _, err := r.DescribeCACertificate("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DescribeCACertificate(x): %v", err)
	}
	if list, err := r.ListCACertificates(); err != nil || len(list) != 2 {
		t.Errorf("ListCACertificates: %d %v", len(list), err)
	}
	if code := r.RegistrationCode(); len(code) != 64 || code != r.RegistrationCode() {
		t.Errorf("RegistrationCode %q", code)
	}
}
