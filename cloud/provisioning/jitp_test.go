package provisioning_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
)

// testCA is a manufacturer's CA made in the test, as a factory line would
// make one with openssl.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Chocolate Box Ltd"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// device signs a device certificate for subject, returning the TLS
// certificate (leaf, then the CA, as devices often send it).
func (ca *testCA) device(t testing.TB, subject pkix.Name) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// jitpTemplate names the thing after the certificate's common name and
// attaches the device policy, as AWS's JITP documentation example does.
const jitpTemplate = `{
  "Parameters": {
    "AWS::IoT::Certificate::CommonName": {"Type": "String"},
    "AWS::IoT::Certificate::SerialNumber": {"Type": "String"},
    "AWS::IoT::Certificate::Organization": {"Type": "String", "Default": "none"},
    "AWS::IoT::Certificate::Id": {"Type": "String"}
  },
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {
      "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
      "AttributePayload": {"serial": {"Ref": "AWS::IoT::Certificate::SerialNumber"},
                           "maker": {"Ref": "AWS::IoT::Certificate::Organization"}}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
      "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "iotsim-device"}}
  }
}`

// eventWatcher is a client allowed to read the JITR events.
func eventWatcher(t *testing.T, sim *cloud.Sim) *device {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing("watcher")
	if err != nil {
		t.Fatal(err)
	}
	reg := sim.Registry()
	if _, err := reg.CreatePolicy("events", `{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/$aws/events/*"},
	  {"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:*:*:topic/$aws/events/*"}]}`); err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.AttachPolicy("events", "arn:aws:iot:us-east-1:123456789012:cert/"+pki.CertificateID(c.Raw)); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	d, err := connect(t, sim, "watcher", pair)
	if err != nil {
		t.Fatal(err)
	}
	d.subscribe(provisioning.RegisteredEventTopic + "+")
	return d
}

func (d *device) event(caID string) provisioning.RegisteredEvent {
	d.t.Helper()
	select {
	case m := <-d.msgs:
		if m.Topic() != provisioning.RegisteredEventTopic+caID {
			d.t.Fatalf("event on %s, want %s", m.Topic(), provisioning.RegisteredEventTopic+caID)
		}
		var ev provisioning.RegisteredEvent
		if err := json.Unmarshal(m.Payload(), &ev); err != nil {
			d.t.Fatalf("event %s: %v", m.Payload(), err)
		}
		return ev
	case <-time.After(15 * time.Second):
		d.t.Fatal("no registered event")
	}
	return provisioning.RegisteredEvent{}
}

func TestJITP(t *testing.T) {
	sim, _ := startSim(t)
	reg := sim.Registry()
	watcher := eventWatcher(t, sim)
	ca := newTestCA(t, "line 1 CA")
	rca, err := reg.RegisterCACertificate(ca.pem, true, true, jitpTemplate)
	if err != nil {
		t.Fatal(err)
	}
	dev := ca.device(t, pkix.Name{CommonName: "box-0001", SerialNumber: "SN-0001", Organization: []string{"ChocolateBox"}})
	certID := pki.CertificateID(dev.Certificate[0])

	// First connection: refused with no CONNACK, the template runs.
	if d, err := connect(t, sim, "box-0001", dev); err == nil {
		d.c.Disconnect(0)
		t.Fatal("first connection succeeded, want it refused as on AWS")
	}
	ev := watcher.event(rca.ID)
	if ev.CertificateID != certID || ev.CACertificateID != rca.ID || ev.CertificateStatus != registry.StatusPendingActivation ||
		ev.AWSAccountID != "123456789012" || ev.Timestamp == 0 || ev.CertificateRegistrationTimestamp == "" {
		t.Errorf("event = %+v", ev)
	}
	c, err := reg.DescribeCertificate(certID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != registry.StatusActive || c.CAID != rca.ID {
		t.Errorf("certificate status %s, CA %s; want ACTIVE, %s", c.Status, c.CAID, rca.ID)
	}
	th, err := reg.DescribeThing("box-0001")
	if err != nil {
		t.Fatalf("thing from the template: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"serial": "SN-0001", "maker": "ChocolateBox"}, th.Attributes); diff != "" {
		t.Errorf("thing attributes (-want +got):\n%s", diff)
	}
	if !slices.Contains(th.Principals, certID) {
		t.Errorf("thing principals %v lack %s", th.Principals, certID)
	}
	pols, err := reg.AttachedPolicies(c.ARN)
	if err != nil || len(pols) != 1 || pols[0].Name != provisioning.DevicePolicyName {
		t.Errorf("policies of the certificate = %v, %v; want [%s]", pols, err, provisioning.DevicePolicyName)
	}

	// Second connection: accepted, and the device policy applies.
	d, err := connect(t, sim, "box-0001", dev)
	if err != nil {
		t.Fatalf("second connection: %v", err)
	}
	d.subscribe("$aws/things/box-0001/shadow/get/accepted")
	d.c.Disconnect(0)
}

// TestJITPAgentReconnects: the agent's transport, given a CA-signed
// identity, is refused once and connects on its own after backoff.
func TestJITPAgentReconnects(t *testing.T) {
	sim, _ := startSim(t)
	ca := newTestCA(t, "line 2 CA")
	if _, err := sim.Registry().RegisterCACertificate(ca.pem, true, true, jitpTemplate); err != nil {
		t.Fatal(err)
	}
	dev := ca.device(t, pkix.Name{CommonName: "box-0002", SerialNumber: "SN-0002"})
	c, err := transport.New(transport.Options{
		Broker:      sim.MQTTAddrs()[0],
		ServerName:  "localhost",
		RootCAs:     sim.CA().Pool(),
		Certificate: dev,
		ClientID:    "box-0002",
		BackoffMin:  10 * time.Millisecond,
		BackoffMax:  50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("agent never connected: %v (stats %+v)", err, c.Stats())
	}
	if st := c.Stats(); st.ConnectFailures < 1 {
		t.Errorf("connect failures = %d, want the first connection refused", st.ConnectFailures)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestJITR(t *testing.T) {
	sim, _ := startSim(t)
	reg := sim.Registry()
	watcher := eventWatcher(t, sim)
	ca := newTestCA(t, "jitr CA")
	rca, err := reg.RegisterCACertificate(ca.pem, true, true, "")
	if err != nil {
		t.Fatal(err)
	}
	dev := ca.device(t, pkix.Name{CommonName: "box-0003"})
	certID := pki.CertificateID(dev.Certificate[0])
	for attempt := range 2 {
		if d, err := connect(t, sim, "box-0003", dev); err == nil {
			d.c.Disconnect(0)
			t.Fatalf("connection %d succeeded with a PENDING_ACTIVATION certificate", attempt)
		}
		// The event is sent again each time a pending certificate is presented.
		if ev := watcher.event(rca.ID); ev.CertificateID != certID || ev.CertificateStatus != registry.StatusPendingActivation {
			t.Errorf("attempt %d: event = %+v", attempt, ev)
		}
		c, err := reg.DescribeCertificate(certID)
		if err != nil || c.Status != registry.StatusPendingActivation {
			t.Fatalf("attempt %d: certificate = %+v, %v; want PENDING_ACTIVATION", attempt, c, err)
		}
	}
	if _, err := reg.DescribeThing("box-0003"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("JITR made a thing: %v", err)
	}
	// What a JITR rule's Lambda does: activate, attach a policy and a thing.
	if _, _, err := sim.CreateThing("box-0003"); err != nil {
		t.Fatal(err)
	}
	c, _ := reg.DescribeCertificate(certID)
	for _, step := range []error{
		reg.UpdateCertificate(certID, registry.StatusActive),
		reg.AttachThingPrincipal("box-0003", certID),
		reg.AttachPolicy(provisioning.DevicePolicyName, c.ARN),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	d, err := connect(t, sim, "box-0003", dev)
	if err != nil {
		t.Fatalf("connect after activation: %v", err)
	}
	d.c.Disconnect(0)
}

// TestJITRefusals: what must still fail at the TLS layer or at CONNECT.
func TestJITRefusals(t *testing.T) {
	sim, _ := startSim(t)
	reg := sim.Registry()
	unknown := newTestCA(t, "unregistered CA")
	inactive := newTestCA(t, "inactive CA")
	noAuto := newTestCA(t, "no auto-registration CA")
	if _, err := reg.RegisterCACertificate(inactive.pem, false, true, jitpTemplate); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.RegisterCACertificate(noAuto.pem, true, false, jitpTemplate); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert tls.Certificate
	}{
		{"unregistered CA", unknown.device(t, pkix.Name{CommonName: "x1"})},
		{"inactive CA", inactive.device(t, pkix.Name{CommonName: "x2"})},
		{"auto-registration off", noAuto.device(t, pkix.Name{CommonName: "x3"})},
		{"no client certificate", tls.Certificate{Leaf: &x509.Certificate{Subject: pkix.Name{CommonName: "x0"}}}},
		{"template parameter missing", func() tls.Certificate {
			ca := newTestCA(t, "jitp CA")
			if _, err := reg.RegisterCACertificate(ca.pem, true, true, jitpTemplate); err != nil {
				t.Fatal(err)
			}
			return ca.device(t, pkix.Name{CommonName: "x4"}) // no SerialNumber
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for attempt := range 2 {
				if d, err := connect(t, sim, tc.cert.Leaf.Subject.CommonName, tc.cert); err == nil {
					d.c.Disconnect(0)
					t.Fatalf("connection %d succeeded", attempt)
				}
			}
			if len(tc.cert.Certificate) == 0 {
				return
			}
			c, err := reg.DescribeCertificate(pki.CertificateID(tc.cert.Certificate[0]))
			if tc.name == "template parameter missing" {
				if err != nil || c.Status != registry.StatusPendingActivation {
					t.Errorf("certificate = %+v, %v; want PENDING_ACTIVATION", c, err)
				}
				return
			}
			if !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("certificate registered: %+v, %v", c, err)
			}
		})
	}
}

func TestSubjectParameters(t *testing.T) {
	dnq := asn1.ObjectIdentifier{2, 5, 4, 46}
	name := pkix.Name{
		Country: []string{"DE"}, Organization: []string{"Org"}, OrganizationalUnit: []string{"Unit"},
		Province: []string{"Berlin"}, CommonName: "cn", SerialNumber: "sn",
		ExtraNames: []pkix.AttributeTypeAndValue{{Type: dnq, Value: "q"}},
	}
	ca := newTestCA(t, "params CA")
	cert := ca.device(t, name).Leaf
	want := map[string]string{
		provisioning.ParamCountry: "DE", provisioning.ParamOrganization: "Org", provisioning.ParamOrganizationalUnit: "Unit",
		provisioning.ParamStateName: "Berlin", provisioning.ParamCommonName: "cn", provisioning.ParamSerialNumber: "sn",
		provisioning.ParamDistinguishedNameQualifier: "q",
	}
	if diff := cmp.Diff(want, provisioning.SubjectParameters(cert)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{provisioning.ParamCommonName: "only"},
		provisioning.SubjectParameters(ca.device(t, pkix.Name{CommonName: "only"}).Leaf)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
