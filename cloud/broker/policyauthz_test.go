package broker_test

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/store"
)

const patience = 10 * time.Second

// device is a paho client connected to a Sim.
type device struct {
	paho.Client
	msgs chan paho.Message
	lost chan error
}

func connectDevice(t *testing.T, s *cloud.Sim, certPEM, keyPEM []byte, clientID string) (*device, error) {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{msgs: make(chan paho.Message, 100), lost: make(chan error, 1)}
	o := paho.NewClientOptions().
		AddBroker("ssl://" + s.MQTTAddrs()[0]).
		SetClientID(clientID).
		SetTLSConfig(&tls.Config{RootCAs: s.CA().Pool(), ServerName: "localhost", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(patience).
		SetKeepAlive(60 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { d.msgs <- m }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { d.lost <- err })
	d.Client = paho.NewClient(o)
	tok := d.Connect()
	if !tok.WaitTimeout(patience) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.Disconnect(0) })
	return d, nil
}

func mustConnect(t *testing.T, s *cloud.Sim, certPEM, keyPEM []byte, clientID string) *device {
	t.Helper()
	d, err := connectDevice(t, s, certPEM, keyPEM, clientID)
	if err != nil {
		t.Fatalf("connect %s: %v", clientID, err)
	}
	return d
}

func (d *device) waitLost(t *testing.T, what string) {
	t.Helper()
	select {
	case <-d.lost:
	case <-time.After(patience):
		t.Fatalf("%s: the broker did not close the connection", what)
	}
}

func (d *device) subscribe(t *testing.T, filter string) {
	t.Helper()
	tok := d.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(patience) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
}

func (d *device) next(t *testing.T) paho.Message {
	t.Helper()
	select {
	case m := <-d.msgs:
		return m
	case <-time.After(patience):
		t.Fatal("no message received")
		return nil
	}
}

// handled collects the topics of authorized device publishes matching filter.
func handled(s *cloud.Sim, filter string) chan string {
	ch := make(chan string, 100)
	s.Broker().Handle(filter, func(_ *broker.Principal, topic string, _ []byte) { ch <- topic })
	return ch
}

func expectTopic(t *testing.T, ch chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("published %q, want %q", got, want)
		}
	case <-time.After(patience):
		t.Fatalf("publish to %s was not accepted", want)
	}
}

// newThing creates a thing with attributes and a certificate with the given
// common name attached to it, and attaches policies to the certificate.
func newThing(t *testing.T, s *cloud.Sim, name, cn string, attrs map[string]string, policies ...string) (certPEM, keyPEM []byte, certARN string) {
	t.Helper()
	reg := s.Registry()
	if _, err := reg.CreateThing(name, "", attrs); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := s.CA().NewKeysAndCertificate(cn)
	if err != nil {
		t.Fatal(err)
	}
	c, err := reg.RegisterCertificate(certPEM, registry.StatusActive)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.AttachThingPrincipal(name, c.ID); err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		if err := reg.AttachPolicy(p, c.ARN); err != nil {
			t.Fatal(err)
		}
	}
	return certPEM, keyPEM, c.ARN
}

func TestThingCannotUseAnotherThingsShadow(t *testing.T) {
	s := cloudtest.Start(t, "")
	certA, keyA, err := s.CreateThing("thing-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateThing("thing-b"); err != nil {
		t.Fatal(err)
	}

	// Its own shadow works.
	a := mustConnect(t, s, certA, keyA, "thing-a")
	a.subscribe(t, "$aws/things/thing-a/shadow/get/+")
	if tok := a.Publish("$aws/things/thing-a/shadow/get", 1, false, ""); !tok.WaitTimeout(patience) || tok.Error() != nil {
		t.Fatalf("get own shadow: %v", tok.Error())
	}
	if m := a.next(t); m.Topic() != "$aws/things/thing-a/shadow/get/rejected" {
		t.Errorf("own shadow get answered on %s", m.Topic())
	}

	// Publishing to B's shadow closes the connection.
	a.Publish("$aws/things/thing-b/shadow/update", 0, false, `{"state":{"desired":{"x":1}}}`)
	a.waitLost(t, "publish to thing-b's shadow")
	if _, err := s.Shadows().Get("thing-b", "", nil); err == nil {
		t.Error("thing-b's shadow was written by thing-a")
	}

	// So does subscribing to it.
	a = mustConnect(t, s, certA, keyA, "thing-a")
	a.Subscribe("$aws/things/thing-b/shadow/update/accepted", 1, nil)
	a.waitLost(t, "subscribe to thing-b's shadow")

	// And A cannot connect as B.
	if _, err := connectDevice(t, s, certA, keyA, "thing-b"); err == nil {
		t.Error("thing-a's certificate connected as thing-b")
	}
}

func TestClaimCertificateOnlyProvisions(t *testing.T) {
	s := cloudtest.Start(t, "")
	ep := s.Endpoint()
	certPEM, err := os.ReadFile(ep.ClaimCert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(ep.ClaimKey)
	if err != nil {
		t.Fatal(err)
	}
	d := mustConnect(t, s, certPEM, keyPEM, "provision-factory-line-7")
	for _, f := range []string{
		"$aws/certificates/create/json/accepted",
		"$aws/certificates/create-from-csr/json/rejected",
		"$aws/provisioning-templates/" + ep.ProvisioningTemplate + "/provision/json/accepted",
	} {
		d.subscribe(t, f)
	}
	d.Publish("telemetry/factory-line-7", 0, false, "{}")
	d.waitLost(t, "claim certificate publishing telemetry")

	d = mustConnect(t, s, certPEM, keyPEM, "provision-factory-line-7")
	d.Subscribe("$aws/things/+/shadow/#", 1, nil)
	d.waitLost(t, "claim certificate subscribing to shadows")

	d = mustConnect(t, s, certPEM, keyPEM, "provision-factory-line-7")
	d.Subscribe("$aws/provisioning-templates/other-template/provision/json/accepted", 1, nil)
	d.waitLost(t, "claim certificate subscribing to another template")
}

func TestExplicitDenyWins(t *testing.T) {
	s := cloudtest.Start(t, "")
	if _, err := s.Registry().CreatePolicy("no-alarms", `{"Version":"2012-10-17","Statement":[
		{"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/alarms/*"}]}`); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := s.CreateThing("box")
	if err != nil {
		t.Fatal(err)
	}
	got := handled(s, "+/box")
	d := mustConnect(t, s, certPEM, keyPEM, "box")
	d.Publish("telemetry/box", 0, false, "{}")
	expectTopic(t, got, "telemetry/box")
	d.Publish("alarms/box", 0, false, "{}")
	expectTopic(t, got, "alarms/box")

	c, err := s.Registry().DescribeCertificate(certID(t, certPEM))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Registry().AttachPolicy("no-alarms", c.ARN); err != nil {
		t.Fatal(err)
	}
	d.Publish("alarms/box", 0, false, "{}")
	d.waitLost(t, "publish denied by an explicit Deny")
	select {
	case topic := <-got:
		t.Errorf("denied publish reached the broker: %s", topic)
	default:
	}
}

func certID(t *testing.T, certPEM []byte) string {
	t.Helper()
	c, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pki.CertificateID(c.Raw)
}

func TestDetachPolicyStopsDeliveries(t *testing.T) {
	s := cloudtest.Start(t, "")
	reg := s.Registry()
	if _, err := reg.CreatePolicy("news", `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/news"},
		{"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:*:*:topic/news"}]}`); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := s.CreateThing("reader")
	if err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:iot:us-east-1:123456789012:cert/" + certID(t, certPEM)
	if err := reg.AttachPolicy("news", arn); err != nil {
		t.Fatal(err)
	}
	d := mustConnect(t, s, certPEM, keyPEM, "reader")
	d.subscribe(t, "news")
	d.subscribe(t, "$aws/things/reader/shadow/update/delta")
	if err := s.Broker().Publish("news", []byte("1"), 1); err != nil {
		t.Fatal(err)
	}
	if m := d.next(t); m.Topic() != "news" || string(m.Payload()) != "1" {
		t.Fatalf("got %s %s, want news 1", m.Topic(), m.Payload())
	}

	if err := reg.DetachPolicy("news", arn); err != nil {
		t.Fatal(err)
	}
	if err := s.Broker().Publish("news", []byte("2"), 1); err != nil {
		t.Fatal(err)
	}
	// A marker on a topic the device still receives, published after: it
	// arrives, and nothing on news came before it.
	if err := s.Broker().Publish("$aws/things/reader/shadow/update/delta", []byte("marker"), 1); err != nil {
		t.Fatal(err)
	}
	if m := d.next(t); m.Topic() != "$aws/things/reader/shadow/update/delta" {
		t.Fatalf("after DetachPolicy got %s %s, want only the marker", m.Topic(), m.Payload())
	}
	select {
	case err := <-d.lost:
		t.Fatalf("a denied delivery closed the connection: %v", err)
	default:
	}
}

func TestThingGroupPolicyApplies(t *testing.T) {
	s := cloudtest.Start(t, "")
	reg := s.Registry()
	if _, err := reg.CreatePolicy("fleet", `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/fleet/${iot:Connection.Thing.ThingName}/*"}]}`); err != nil {
		t.Fatal(err)
	}
	g, err := reg.CreateThingGroup("vans", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.AttachPolicy("fleet", g.ARN); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := s.CreateThing("van-1")
	if err != nil {
		t.Fatal(err)
	}
	got := handled(s, "fleet/#")

	d := mustConnect(t, s, certPEM, keyPEM, "van-1")
	d.Publish("fleet/van-1/pos", 0, false, "{}")
	d.waitLost(t, "publish before joining the group")

	if err := reg.AddThingToThingGroup("vans", "van-1"); err != nil {
		t.Fatal(err)
	}
	d = mustConnect(t, s, certPEM, keyPEM, "van-1")
	d.Publish("fleet/van-1/pos", 0, false, "{}")
	expectTopic(t, got, "fleet/van-1/pos")
	d.Publish("fleet/van-2/pos", 0, false, "{}")
	d.waitLost(t, "publish as another van")
}

func TestPolicyVariables(t *testing.T) {
	s := cloudtest.Start(t, "")
	reg := s.Registry()
	if _, err := reg.CreatePolicy("vars", `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
		{"Effect":"Allow","Action":"iot:Publish","Resource":[
			"arn:aws:iot:*:*:topic/rooms/${iot:Connection.Thing.Attributes[room]}",
			"arn:aws:iot:*:*:topic/cn/${iot:Certificate.Subject.CommonName}",
			"arn:aws:iot:*:*:topic/issuer/${iot:Certificate.Issuer.CommonName}",
			"arn:aws:iot:*:*:topic/floors/${iot:Connection.Thing.Attributes[floor]}"]}]}`); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _ := newThing(t, s, "sensor-9", "serial-0042", map[string]string{"room": "kitchen"}, "vars")
	got := handled(s, "#")

	// ThingName resolves (Connect), and so do an attribute, the subject and
	// the issuer common names.
	d := mustConnect(t, s, certPEM, keyPEM, "sensor-9")
	for _, topic := range []string{"rooms/kitchen", "cn/serial-0042", "issuer/" + s.CA().Cert.Subject.CommonName} {
		d.Publish(topic, 0, false, "{}")
		expectTopic(t, got, topic)
	}
	for _, tc := range []struct{ topic, why string }{
		{"rooms/hall", "another attribute value"},
		{"floors/1", "an attribute the thing does not have (the variable stays literal)"},
		{"cn/serial-0043", "another common name"},
	} {
		d := mustConnect(t, s, certPEM, keyPEM, "sensor-9")
		d.Publish(tc.topic, 0, false, "{}")
		d.waitLost(t, tc.why)
	}
	// A client id that is not the thing: ThingName does not resolve.
	if _, err := connectDevice(t, s, certPEM, keyPEM, "sensor-9-other"); err == nil {
		t.Error("connected with a client id that is not an attached thing")
	}
}

// BenchmarkPolicyAuthorizerReceive is the per-delivery check of a thing
// with the default device policy (cached entry, no registry reads).
func BenchmarkPolicyAuthorizerReceive(b *testing.B) {
	dir := b.TempDir()
	db, err := store.Open(filepath.Join(dir, "sim.db"), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	reg := registry.New(db, "us-east-1", "123456789012", nil)
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		b.Fatal(err)
	}
	certPEM, _, err := cloud.CreateThing(reg, ca, "box-1")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		b.Fatal(err)
	}
	a := &broker.PolicyAuthorizer{Registry: reg}
	p := &broker.Principal{ClientID: "box-1", ThingName: "box-1", CertificateID: pki.CertificateID(cert.Raw), Certificate: cert, RemoteAddr: "127.0.0.1:5000"}
	if err := a.Connect(p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !a.Receive(p, "$aws/things/box-1/shadow/update/delta") {
			b.Fatal("denied")
		}
	}
}
