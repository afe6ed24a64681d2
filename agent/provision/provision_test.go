package provision

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/tpm"
)

// mqttClient runs a transport client connected to sim with the claim
// certificate (or cert, when given).
func mqttClient(t *testing.T, sim *cloud.Sim, clientID string, cert *tls.Certificate) *transport.Client {
	t.Helper()
	if cert == nil {
		e := sim.Endpoint()
		c, err := tls.LoadX509KeyPair(e.ClaimCert, e.ClaimKey)
		if err != nil {
			t.Fatal(err)
		}
		cert = &c
	}
	pool := x509.NewCertPool()
	pool.AddCert(sim.CA().Cert)
	c, err := transport.New(transport.Options{
		Broker: sim.MQTTAddrs()[0], ServerName: "localhost", RootCAs: pool,
		Certificate: *cert, ClientID: clientID, CleanSession: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatalf("connect %s: %v", clientID, err)
	}
	return c
}

// faulty wraps a transport to lose answers or fail publishes, as a crash
// at that point would.
type faulty struct {
	Transport
	mu          sync.Mutex
	dropPrefix  string // answers on topics with this prefix are lost
	failPrefix  string // publishes to topics with this prefix fail
	failPublish error
}

func (f *faulty) Subscribe(filter string, qos byte, h func(string, []byte)) error {
	return f.Transport.Subscribe(filter, qos, func(topic string, payload []byte) {
		f.mu.Lock()
		drop := f.dropPrefix != "" && strings.HasPrefix(topic, f.dropPrefix)
		f.mu.Unlock()
		if !drop {
			h(topic, payload)
		}
	})
}

func (f *faulty) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	if f.failPrefix != "" && strings.HasPrefix(topic, f.failPrefix) {
		return f.failPublish
	}
	return f.Transport.Publish(ctx, topic, qos, payload)
}

var errCrash = errors.New("simulated crash")

func fastOptions(dir string, csr bool, serial string) Options {
	return Options{
		Template: cloud.ProvisioningTemplate, Params: map[string]string{"SerialNumber": serial},
		UseCSR: csr, StateDir: dir, ResponseTimeout: 3 * time.Second, Attempts: 3,
	}
}

// checkOneIdentity asserts that the thing has exactly one certificate,
// ACTIVE, the identity's, and that the device connects with it.
func checkOneIdentity(t *testing.T, sim *cloud.Sim, id Identity, ks KeyStore) {
	t.Helper()
	th, err := sim.Registry().DescribeThing(id.ThingName)
	if err != nil {
		t.Fatalf("thing %s: %v", id.ThingName, err)
	}
	if len(th.Principals) != 1 || th.Principals[0] != id.CertificateID {
		t.Fatalf("thing %s has certificates %v, want only %s", id.ThingName, th.Principals, id.CertificateID)
	}
	c, err := sim.Registry().DescribeCertificate(id.CertificateID)
	if err != nil || c.Status != registry.StatusActive {
		t.Fatalf("certificate %s: %v %v", id.CertificateID, c.Status, err)
	}
	var cert tls.Certificate
	if id.KeyFile == "" {
		s, err := ks.Signer()
		if err != nil {
			t.Fatal(err)
		}
		cert, err = id.Certificate(s)
		if err != nil {
			t.Fatal(err)
		}
	} else if cert, err = id.Certificate(nil); err != nil {
		t.Fatal(err)
	}
	mqttClient(t, sim, id.ThingName, &cert)
}

func TestProvisionEndToEnd(t *testing.T) {
	sim := cloudtest.Start(t, "")
	for _, tc := range []struct {
		name   string
		csr    bool
		format string
	}{{"csr-json", true, "json"}, {"keys-json", false, "json"}, {"csr-cbor", true, "cbor"}, {"keys-cbor", false, "cbor"}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ks := tpm.NewFileStore(filepath.Join(dir, "keys", "device.key"))
			o := fastOptions(dir, tc.csr, "e2e-"+tc.name)
			o.Format = tc.format
			id, err := Provision(context.Background(), mqttClient(t, sim, "provision-claim-"+tc.name, nil), ks, o)
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			if id.ThingName != "e2e-"+tc.name || (id.KeyFile == "") != tc.csr {
				t.Errorf("identity %+v", id)
			}
			loaded, err := Load(dir)
			if err != nil || loaded.CertificateID != id.CertificateID {
				t.Fatalf("Load: %+v %v", loaded, err)
			}
			if _, err := os.Stat(filepath.Join(dir, dirName, progressFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("progress file left: %v", err)
			}
			checkOneIdentity(t, sim, id, ks)
			// Provisioning again is a no-op.
			again, err := Provision(context.Background(), nil, ks, o)
			if err != nil || again.CertificateID != id.CertificateID {
				t.Errorf("second Provision: %+v %v", again, err)
			}
		})
	}
}

// TestCrashBetweenSteps interrupts provisioning after each step, restarts
// it, and checks that exactly one live identity results.
func TestCrashBetweenSteps(t *testing.T) {
	sim := cloudtest.Start(t, "")
	for _, tc := range []struct {
		name  string
		csr   bool
		crash func(f *faulty)
	}{
		{"after key generation", true, func(f *faulty) { f.failPrefix, f.failPublish = "$aws/certificates/", errCrash }},
		{"certificate created, answer lost", true, func(f *faulty) { f.dropPrefix = "$aws/certificates/" }},
		{"keys created, answer lost", false, func(f *faulty) { f.dropPrefix = "$aws/certificates/" }},
		{"certificate saved, RegisterThing not sent", true, func(f *faulty) { f.failPrefix, f.failPublish = "$aws/provisioning-templates/", errCrash }},
		{"RegisterThing sent, answer lost", true, func(f *faulty) { f.dropPrefix = "$aws/provisioning-templates/" }},
		{"RegisterThing sent, answer lost (keys)", false, func(f *faulty) { f.dropPrefix = "$aws/provisioning-templates/" }},
		{"identity saved, progress not removed", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ks := tpm.NewFileStore(filepath.Join(dir, "keys", "device.key"))
			serial := "crash-" + strings.NewReplacer(" ", "-", ",", "", "(", "", ")", "").Replace(tc.name)
			if tc.crash != nil {
				t.Parallel() // the hook case changes a global
			}
			o := fastOptions(dir, tc.csr, serial)
			o.Attempts, o.ResponseTimeout = 1, time.Second
			claimID := "provision-" + serial
			f := &faulty{Transport: mqttClient(t, sim, claimID, nil)}
			if tc.crash != nil {
				tc.crash(f)
			} else {
				testHookAfterIdentity = func() error { return errCrash }
				t.Cleanup(func() { testHookAfterIdentity = nil })
			}
			if _, err := Provision(context.Background(), f, ks, o); err == nil {
				t.Fatal("the interrupted Provision succeeded")
			}
			if tc.crash == nil {
				testHookAfterIdentity = nil
			}

			// Restart: a new process, a new connection.
			o.Attempts, o.ResponseTimeout = 3, 3*time.Second
			id, err := Provision(context.Background(), mqttClient(t, sim, claimID+"-2", nil), ks, o)
			if err != nil {
				t.Fatalf("Provision after the crash: %v", err)
			}
			if id.ThingName != serial {
				t.Errorf("thing %q, want %q", id.ThingName, serial)
			}
			checkOneIdentity(t, sim, id, ks)
		})
	}
}

func TestPermanentRejection(t *testing.T) {
	sim := cloudtest.Start(t, "")
	dir := t.TempDir()
	o := fastOptions(dir, false, "")
	o.Params = nil // the template requires SerialNumber
	_, err := Provision(context.Background(), mqttClient(t, sim, "provision-claim-perm", nil), nil, o)
	var rej *RejectedError
	if !errors.As(err, &rej) || rej.StatusCode != 400 || rej.ErrorCode != "InvalidParameters" || rej.Retryable() {
		t.Fatalf("Provision without SerialNumber: %v", err)
	}
	// A fixed configuration finishes with the same certificate.
	o.Params = map[string]string{"SerialNumber": "perm-1"}
	prog, _ := (&client{dir: filepath.Join(dir, dirName)}).readProgress()
	id, err := Provision(context.Background(), mqttClient(t, sim, "provision-claim-perm-2", nil), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if prog == nil || id.CertificateID != prog.CertificateID {
		t.Errorf("a new certificate was made: %+v, progress %+v", id, prog)
	}
}

func TestSerialNumber(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pi := write("cpuinfo-pi", "processor\t: 0\nmodel name\t: ARMv7\n\nHardware\t: BCM2835\nRevision\t: a02082\nSerial\t\t: 00000000deadbeef\nModel\t\t: Raspberry Pi 3\n")
	zeros := write("cpuinfo-zero", "Serial\t\t: 0000000000000000\n")
	x86 := write("cpuinfo-x86", "processor\t: 0\nvendor_id\t: GenuineIntel\n")
	mid := write("machine-id", "0123456789abcdef0123456789abcdef\n")
	bad := write("machine-id-bad", "not a serial!\n")
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name, cpuinfo, machineID, want string
		err                            bool
	}{
		{"pi", pi, mid, "00000000deadbeef", false},
		{"zero serial", zeros, mid, "0123456789abcdef0123456789abcdef", false},
		{"no serial", x86, mid, "0123456789abcdef0123456789abcdef", false},
		{"no cpuinfo", missing, mid, "0123456789abcdef0123456789abcdef", false},
		{"nothing", x86, missing, "", true},
		{"malformed machine-id", x86, bad, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SerialNumberFrom(tc.cpuinfo, tc.machineID)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("SerialNumberFrom = %q, %v; want %q (error %v)", got, err, tc.want, tc.err)
			}
			if err != nil && !errors.Is(err, ErrNoSerial) {
				t.Errorf("error %v does not wrap ErrNoSerial", err)
			}
		})
	}
}

// TestProgressOfOtherSettingsRefused: an unfinished provisioning whose
// RegisterThing may have gone out is not resumed with another template,
// serial or claim; Restart starts over.
func TestProgressOfOtherSettingsRefused(t *testing.T) {
	sim := cloudtest.Start(t, "")
	dir := t.TempDir()
	ks := tpm.NewFileStore(filepath.Join(dir, "keys", "device.key"))
	o := fastOptions(dir, true, "mm-1")
	o.Claim = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	f := &faulty{Transport: mqttClient(t, sim, "provision-mm", nil), failPrefix: "$aws/provisioning-templates/", failPublish: errCrash}
	if _, err := Provision(context.Background(), f, ks, o); !errors.Is(err, errCrash) {
		t.Fatalf("interrupted Provision: %v", err)
	}
	file := filepath.Join(dir, dirName, progressFile)
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"serial", func(o *Options) { o.Params = map[string]string{"SerialNumber": "mm-2"} }, `parameter SerialNumber: "mm-1" in the file, "mm-2" now`},
		{"extra parameter", func(o *Options) { o.Params = map[string]string{"SerialNumber": "mm-1", "Site": "b"} }, `parameter Site: none in the file, "b" now`},
		{"template", func(o *Options) { o.Template = "factory-b" }, `template: "iotsim-fleet" in the file, "factory-b" now`},
		{"claim", func(o *Options) { o.Claim = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" }, "claim certificate: aaaaaaaaaaaaaaaa… in the file, bbbbbbbbbbbbbbbb… now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o2 := o
			tc.mod(&o2)
			_, err := Provision(context.Background(), nil, ks, o2) // refused before any request
			var mm *MismatchError
			if !errors.As(err, &mm) || !errors.Is(err, ErrProgressMismatch) || mm.File != file {
				t.Fatalf("Provision with another %s: %v, want a *MismatchError for %s", tc.name, err, file)
			}
			if len(mm.Differences) != 1 || mm.Differences[0] != tc.want {
				t.Errorf("differences %q, want [%q]", mm.Differences, tc.want)
			}
			if !strings.Contains(err.Error(), "iotagent provision --restart") || !strings.Contains(err.Error(), "delete "+file) {
				t.Errorf("error says no way to start over: %v", err)
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("the refusal touched %s: %v", file, err)
			}
		})
	}
	o.Params, o.Restart = map[string]string{"SerialNumber": "mm-2"}, true
	id, err := Provision(context.Background(), mqttClient(t, sim, "provision-mm-2", nil), ks, o)
	if err != nil {
		t.Fatalf("Provision with Restart: %v", err)
	}
	if id.ThingName != "mm-2" {
		t.Errorf("thing %q, want mm-2", id.ThingName)
	}
	checkOneIdentity(t, sim, id, ks)
}
