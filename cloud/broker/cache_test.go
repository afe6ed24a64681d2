package broker

import (
	"crypto/x509"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/policy"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/store"
)

const (
	allowAllPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`
	denyAllPolicy  = `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iot:*","Resource":"*"}]}`
)

// TestPolicyCacheScopes: a policy change drops the cached entries it can
// alter at once (the next decision sees it), and keeps them when its
// certificate or thing has no entry (a RegisterThing of another device).
func TestPolicyCacheScopes(t *testing.T) {
	ca, _ := testPKI(t)
	db, err := store.Open(filepath.Join(t.TempDir(), "sim.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg := registry.New(db, "eu-central-1", "123456789012", nil)
	for name, doc := range map[string]string{"allow": allowAllPolicy, "deny": denyAllPolicy} {
		if _, err := reg.CreatePolicy(name, doc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.CreateThingGroup("fleet", nil); err != nil {
		t.Fatal(err)
	}
	device := func(thing string) (registry.Certificate, *Principal) {
		certPEM, _, err := ca.NewKeysAndCertificate(thing)
		if err != nil {
			t.Fatal(err)
		}
		c, err := reg.RegisterCertificate(certPEM, registry.StatusActive)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.CreateThing(thing, "", nil); err != nil {
			t.Fatal(err)
		}
		if err := reg.AttachThingPrincipal(thing, c.ID); err != nil {
			t.Fatal(err)
		}
		if err := reg.AttachPolicy("allow", c.ARN); err != nil {
			t.Fatal(err)
		}
		return c, &Principal{ClientID: thing, ThingName: thing, CertificateID: c.ID, RemoteAddr: "127.0.0.1:5000"}
	}
	certA, pA := device("a")
	certB, pB := device("b")
	other, _ := device("other")
	a := &PolicyAuthorizer{Registry: reg}
	for _, p := range []*Principal{pA, pB} {
		if err := a.Connect(p); err != nil {
			t.Fatal(err)
		}
	}
	const topic = "$aws/things/x/shadow/get"
	for _, tc := range []struct {
		name         string
		change       func() error
		keep         bool // the cached entries are the same
		wantA, wantB bool
	}{
		{"attach to a certificate without entries", func() error { return reg.AttachPolicy("deny", other.ARN) }, true, true, true},
		{"group change of a thing without entries", func() error { return reg.AddThingToThingGroup("fleet", "other") }, true, true, true},
		{"detach from B's certificate", func() error { return reg.DetachPolicy("allow", certB.ARN) }, false, true, false},
		{"attach again to B's certificate", func() error { return reg.AttachPolicy("allow", certB.ARN) }, false, true, true},
		{"deny on the group, A joins it", func() error {
			if err := reg.AttachPolicy("deny", "arn:aws:iot:eu-central-1:123456789012:thinggroup/fleet"); err != nil {
				return err
			}
			return reg.AddThingToThingGroup("fleet", "a")
		}, false, false, true},
		{"A leaves the group", func() error { return reg.RemoveThingFromThingGroup("fleet", "a") }, false, true, true},
		{"deny attached to A's certificate", func() error { return reg.AttachPolicy("deny", certA.ARN) }, false, false, true},
	} {
		before := []*authEntry{a.entry(pA, false), a.entry(pB, false)}
		if err := tc.change(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		after := []*authEntry{a.entry(pA, false), a.entry(pB, false)}
		if kept := before[0] == after[0] && before[1] == after[1]; kept != tc.keep {
			t.Errorf("%s: entries kept %v, want %v", tc.name, kept, tc.keep)
		}
		if got := a.Receive(pA, topic); got != tc.wantA {
			t.Errorf("%s: A may receive %v, want %v", tc.name, got, tc.wantA)
		}
		if got := a.Receive(pB, topic); got != tc.wantB {
			t.Errorf("%s: B may receive %v, want %v", tc.name, got, tc.wantB)
		}
	}
}

// TestVerifyCacheValidity: a cached verification stands only within the
// validity of the chain it found, and only for the same key.
func TestVerifyCacheValidity(t *testing.T) {
	ca, _ := testPKI(t)
	certPEM, _, err := ca.NewKeysAndCertificate("dev")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{leaf, ca.Cert}
	key := verifyKey([][]byte{leaf.Raw}, nil)
	var c verifyCache
	if c.ok(key, leaf.NotBefore.Add(time.Hour)) {
		t.Fatal("empty cache answered")
	}
	c.add(key, chain)
	notAfter := leaf.NotAfter
	if ca.Cert.NotAfter.Before(notAfter) {
		notAfter = ca.Cert.NotAfter
	}
	for _, tc := range []struct {
		name string
		key  [32]byte
		at   time.Time
		want bool
	}{
		{"within", key, leaf.NotBefore.Add(time.Hour), true},
		{"at notBefore", key, leaf.NotBefore, true},
		{"before notBefore", key, leaf.NotBefore.Add(-time.Second), false},
		{"at notAfter", key, notAfter, true},
		{"after notAfter", key, notAfter.Add(time.Second), false},
		{"another chain", verifyKey([][]byte{leaf.Raw, ca.Cert.Raw}, nil), leaf.NotBefore.Add(time.Hour), false},
		{"another CA set", verifyKey([][]byte{leaf.Raw}, []registry.CACertificate{{ID: "x", Status: registry.StatusActive}}), leaf.NotBefore.Add(time.Hour), false},
		{"an inactive CA does not count", verifyKey([][]byte{leaf.Raw}, []registry.CACertificate{{ID: "x", Status: registry.StatusInactive}}), leaf.NotBefore.Add(time.Hour), true},
	} {
		if got := c.ok(tc.key, tc.at); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestVerifiedCertificateExpires: a certificate accepted (and cached) is
// refused once the clock passes its notAfter.
func TestVerifiedCertificateExpires(t *testing.T) {
	var now atomic.Int64 // unix nanoseconds
	e := newEnvWith(t, func(o *Options) {
		o.Authorizer = allowAll{}
		o.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	cert, _ := e.device("A")
	now.Store(cert.Leaf.NotBefore.Add(2 * time.Hour).UnixNano())
	c := e.rawConnected(cert, "A")
	c.conn.Close()
	now.Store(cert.Leaf.NotAfter.Add(time.Second).UnixNano())
	if c, err := e.dialRaw(e.b.Addrs()[0], &cert, 4); err == nil {
		if _, err := c.connect(connectPacket("A", 4, 60)); err == nil {
			t.Fatal("an expired certificate connected after it had been verified")
		}
	}
}

// TestCertVarsCache: each certificate keeps its own variables, the same
// whether computed or cached.
func TestCertVarsCache(t *testing.T) {
	ca, _ := testPKI(t)
	a := &PolicyAuthorizer{}
	var certs []*x509.Certificate
	for _, cn := range []string{"dev-a", "dev-b"} {
		certPEM, _, err := ca.NewKeysAndCertificate(cn)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.ParseCertificatePEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	for round := range 2 {
		for i, c := range certs {
			want := policy.Vars{}
			certVars(want, c)
			got := a.certVars(c)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("round %d, certificate %d (-want +got):\n%s", round, i, diff)
			}
			if cn := got["iot:Certificate.Subject.CommonName"]; len(cn) != 1 || cn[0] != c.Subject.CommonName {
				t.Errorf("round %d: common name %v, want %s", round, cn, c.Subject.CommonName)
			}
		}
	}
}
