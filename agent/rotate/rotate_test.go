package rotate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/agent/internal/fleetapi"
	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
)

// device is a thing made with `iotsim thing create`, its files in
// stateDir/identity, and its running connection.
type device struct {
	name, stateDir string
	certFile       string
	keyRef         string
	conn           *transport.Client
	stop           func()
}

func newDevice(t *testing.T, sim *cloud.Sim, name string) *device {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing(name)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{name: name, stateDir: t.TempDir()}
	dir := filepath.Join(d.stateDir, "identity")
	if err := cloud.WriteCredentials(dir, "device", certPEM, keyPEM, sim.CA().CertPEM); err != nil {
		t.Fatal(err)
	}
	d.certFile, d.keyRef = filepath.Join(dir, "device.crt"), FileRef(filepath.Join(dir, "device.key"))
	d.conn, d.stop = connectAs(t, sim, name, d.certFile, filepath.Join(dir, "device.key"))
	return d
}

// connectAs runs a persistent-session transport for the thing with the
// certificate and key files, as the agent does. stop ends it (also at
// cleanup).
func connectAs(t *testing.T, sim *cloud.Sim, name, certFile, keyFile string) (c *transport.Client, stop func()) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err = transport.New(transport.Options{
		Broker: sim.MQTTAddrs()[0], ServerName: "localhost", RootCAs: sim.CA().Pool(),
		Certificate: cert, ClientID: name, BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	return c, stop
}

func (d *device) options(sim *cloud.Sim) Options {
	return Options{
		StateDir:               d.stateDir,
		Template:               cloud.ProvisioningTemplate,
		Params:                 map[string]string{"SerialNumber": d.name},
		CurrentCertificateFile: d.certFile,
		CurrentKeyRef:          d.keyRef,
		ResponseTimeout:        2 * time.Second,
		Verify: DialVerifier(DialOptions{
			Addr: sim.MQTTAddrs()[0], ServerName: "localhost", RootCAs: sim.CA().Pool(), ClientID: d.name,
		}),
	}
}

func certIDOf(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return pki.CertificateID(c.Raw)
}

// checkRotated asserts what the cloud and the state dir say after a
// committed rotation from oldID.
func checkRotated(t *testing.T, sim *cloud.Sim, d *device, res Result, oldID string) {
	t.Helper()
	reg := sim.Registry()
	if res.OldCertificateID != oldID || res.NewCertificateID == oldID {
		t.Errorf("result %+v: old id want %s", res, oldID)
	}
	if got := certIDOf(t, res.NewCertFile); got != res.NewCertificateID {
		t.Errorf("new certificate file holds %s, result says %s", got, res.NewCertificateID)
	}
	c, err := reg.DescribeCertificate(res.NewCertificateID)
	if err != nil || c.Status != registry.StatusActive {
		t.Fatalf("new certificate = %+v, %v; want ACTIVE", c, err)
	}
	if !slices.Contains(c.Things, d.name) {
		t.Errorf("new certificate attached to %v, want %s", c.Things, d.name)
	}
	pols, err := reg.AttachedPolicies(c.ARN)
	if err != nil || len(pols) != 1 || pols[0].Name != provisioning.DevicePolicyName {
		t.Errorf("policies of the new certificate = %v, %v", pols, err)
	}
	id, err := Load(d.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Identity{CertificateID: res.NewCertificateID, CertificateFile: res.NewCertFile, KeyRef: res.NewKeyRef, OldCertificateID: oldID},
		id, cmpIgnoreTime); diff != "" {
		t.Errorf("rotated.json (-want +got):\n%s", diff)
	}
	if Pending(d.stateDir) {
		t.Error("rotation.json left behind")
	}
}

var cmpIgnoreTime = cmp.Transformer("notime", func(id Identity) Identity { id.RotatedAt = time.Time{}; return id })

func TestRotateEndToEnd(t *testing.T) {
	sim := cloudtest.Start(t, "")
	d := newDevice(t, sim, "SN-ROT-1")
	oldID := certIDOf(t, d.certFile)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	res, err := Rotate(ctx, d.conn, FileKeys{Dir: filepath.Join(d.stateDir, "identity")}, d.options(sim))
	if err != nil {
		t.Fatal(err)
	}
	if want := FileRef(filepath.Join(d.stateDir, "identity", "device-a.key")); res.NewKeyRef != want {
		t.Errorf("new key %s, want %s", res.NewKeyRef, want)
	}
	checkRotated(t, sim, d, res, oldID)
	// The old certificate is untouched: deactivating it is the operator's.
	if c, _ := sim.Registry().DescribeCertificate(oldID); c.Status != registry.StatusActive {
		t.Errorf("old certificate %s, want still ACTIVE", c.Status)
	}

	// The agent restarts its transport with the new identity.
	d.stop()
	keyPath, _ := filePath(res.NewKeyRef)
	conn, _ := connectAs(t, sim, d.name, res.NewCertFile, keyPath)

	// A second rotation uses the other slot and reports the first new id.
	res2, err := Rotate(ctx, conn, FileKeys{Dir: filepath.Join(d.stateDir, "identity")}, d.options(sim))
	if err != nil {
		t.Fatal(err)
	}
	if want := FileRef(filepath.Join(d.stateDir, "identity", "device-b.key")); res2.NewKeyRef != want {
		t.Errorf("second new key %s, want %s", res2.NewKeyRef, want)
	}
	checkRotated(t, sim, d, res2, res.NewCertificateID)
	th, _ := sim.Registry().DescribeThing(d.name)
	if len(th.Principals) != 3 {
		t.Errorf("thing principals = %v, want the original and two rotated", th.Principals)
	}
}

// TestRotateUnderConnectThrottle: with AWS's one CONNECT per second per
// client id in force, the verifier's CONNECT comes moments after the
// device's own one and is closed without CONNACK; it is tried again after
// the throttle's second and the rotation commits.
func TestRotateUnderConnectThrottle(t *testing.T) {
	sim := cloudtest.StartWith(t, cloud.Options{MQTTConnectInterval: time.Second})
	d := newDevice(t, sim, "SN-ROT-THROTTLE")
	oldID := certIDOf(t, d.certFile)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := sim.Broker().Stats().ConnectsThrottled
	res, err := Rotate(ctx, d.conn, FileKeys{Dir: filepath.Join(d.stateDir, "identity")}, d.options(sim))
	if err != nil {
		t.Fatal(err)
	}
	checkRotated(t, sim, d, res, oldID)
	if n := sim.Broker().Stats().ConnectsThrottled - before; n == 0 {
		t.Error("no CONNECT was throttled: the test did not exercise the retry")
	}
}

var errCrash = errors.New("crash")

// TestRotateInterrupted stops Rotate after each persisted step, as a crash
// would, restarts it, and checks that the old identity stays in use until
// the commit and that exactly one new certificate ends up attached.
func TestRotateInterrupted(t *testing.T) {
	sim := cloudtest.Start(t, "")
	steps := []string{"started", "key", "certificate", "registered", "verified", "committed"}
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			d := newDevice(t, sim, "SN-CRASH-"+string(rune('A'+i)))
			oldID := certIDOf(t, d.certFile)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ks := FileKeys{Dir: filepath.Join(d.stateDir, "identity")}
			testHook = func(s string) error {
				if s == step {
					return errCrash
				}
				return nil
			}
			_, err := Rotate(ctx, d.conn, ks, d.options(sim))
			testHook = nil
			if !errors.Is(err, errCrash) {
				t.Fatalf("Rotate = %v, want the crash at %s", err, step)
			}
			_, lerr := Load(d.stateDir)
			if committed := lerr == nil; committed != (step == "committed") {
				t.Fatalf("after a crash at %s: committed = %v (%v)", step, committed, lerr)
			}
			res, err := Rotate(ctx, d.conn, ks, d.options(sim))
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			checkRotated(t, sim, d, res, oldID)
			th, _ := sim.Registry().DescribeThing(d.name)
			if len(th.Principals) != 2 {
				t.Errorf("thing principals = %v, want the old and one new", th.Principals)
			}
		})
	}
}

// TestRotateVerifyFails: a new certificate that cannot connect leaves the
// old identity in place, and the next call finishes once it can.
func TestRotateVerifyFails(t *testing.T) {
	sim := cloudtest.Start(t, "")
	d := newDevice(t, sim, "SN-VERIFY")
	ks := FileKeys{Dir: filepath.Join(d.stateDir, "identity")}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := d.options(sim)
	o.Verify = DialVerifier(DialOptions{Addr: sim.MQTTAddrs()[0], ServerName: "localhost", RootCAs: sim.CA().Pool(), ClientID: "someone-else"})
	if _, err := Rotate(ctx, d.conn, ks, o); !errors.Is(err, ErrVerify) || !errors.Is(err, ErrRefused) {
		t.Fatalf("Rotate = %v, want ErrVerify and ErrRefused", err)
	}
	if _, err := Load(d.stateDir); !errors.Is(err, ErrNotRotated) {
		t.Fatalf("Load = %v, want ErrNotRotated", err)
	}
	if !Pending(d.stateDir) {
		t.Error("no pending rotation")
	}
	res, err := Rotate(ctx, d.conn, ks, d.options(sim))
	if err != nil {
		t.Fatal(err)
	}
	checkRotated(t, sim, d, res, certIDOf(t, d.certFile))
}

func TestDue(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		notAfter time.Time
		days     int
		want     bool
	}{
		{"far", now.Add(100 * 24 * time.Hour), 30, false},
		{"inside", now.Add(29 * 24 * time.Hour), 30, true},
		{"edge", now.Add(30 * 24 * time.Hour), 30, true},
		{"just outside", now.Add(30*24*time.Hour + time.Second), 30, false},
		{"expired", now.Add(-time.Hour), 0, true},
		{"zero days", now.Add(time.Hour), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Due(&x509.Certificate{NotAfter: tc.notAfter}, now, tc.days); got != tc.want {
				t.Errorf("Due = %v, want %v", got, tc.want)
			}
		})
	}
	if Due(nil, now, 30) {
		t.Error("Due(nil) = true")
	}
}

func TestKeySlots(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "identity")
	k := FileKeys{Dir: dir}
	a, b := FileRef(filepath.Join(dir, "device-a.key")), FileRef(filepath.Join(dir, "device-b.key"))
	for cur, want := range map[string]string{"": a, FileRef("/etc/iotagent/device.key"): a, a: b, b: a} {
		if got := k.Next(cur); got != want {
			t.Errorf("Next(%q) = %q, want %q", cur, got, want)
		}
	}
	s1, err := k.Create(a)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := k.Create(a) // an interrupted attempt's key is replaced
	if err != nil {
		t.Fatal(err)
	}
	if fleetapi.PublicKeysEqual(s1.Public(), s2.Public()) {
		t.Error("Create reused the key")
	}
	got, err := k.Signer(a)
	if err != nil || !fleetapi.PublicKeysEqual(got.Public(), s2.Public()) {
		t.Errorf("Signer = %v, want the second key", err)
	}
	if _, err := k.Create("tpm:0x81000010"); err == nil {
		t.Error("FileKeys accepted a TPM reference")
	}
	tk := &TPMKeys{Handles: [2]uint32{0x81000010, 0x81000011}}
	if got := tk.Next(TPMRef(0x81000010)); got != "tpm:0x81000011" {
		t.Errorf("TPM Next = %s", got)
	}
	if got := tk.Next("tpm:0x81000011"); got != "tpm:0x81000010" {
		t.Errorf("TPM Next = %s", got)
	}
	if _, err := tk.Create("tpm:0x81000099"); err == nil {
		t.Error("TPMKeys accepted a handle outside its pair")
	}
}

func FuzzParseTPMRef(f *testing.F) {
	for _, s := range []string{"tpm:0x81000010", "tpm:", "file:/x", "tpm:0xffffffffff", "tpm:12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseTPMRef(s)
		if err == nil {
			if h2, err := ParseTPMRef(TPMRef(h)); err != nil || h2 != h {
				t.Errorf("round trip %q: %x, %v", s, h2, err)
			}
		}
	})
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"certificateId":"x","certificateFile":"/a","keyRef":"file:/b"}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "identity"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "identity", rotatedFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		id, err := Load(dir)
		if err == nil && (id.CertificateFile == "" || id.KeyRef == "") {
			t.Errorf("Load accepted an incomplete identity %+v", id)
		}
	})
}

func TestConnectPacket(t *testing.T) {
	got := connectPacket("ab", 60)
	want := []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 60, 0, 2, 'a', 'b'}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	long := connectPacket(string(make([]byte, 200)), 60)
	if long[1] != 0x80|byte(212%128) || long[2] != 1 {
		t.Errorf("remaining length of a 212-byte body = % x", long[1:3])
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func parseCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return fleetapi.ParseCert(string(b))
}
