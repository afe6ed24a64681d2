package provisioning_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/fxamacker/cbor/v2"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/provisioning"
)

// clock is a settable clock for the simulator.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// startSim runs iotsim on a settable clock.
func startSim(t *testing.T) (*cloud.Sim, *clock) {
	t.Helper()
	clk := &clock{t: time.Now()}
	return cloudtest.StartWith(t, cloud.Options{Now: clk.Now}), clk
}

// device is a paho client connected with some certificate.
type device struct {
	t    *testing.T
	c    mqtt.Client
	msgs chan mqtt.Message
}

// connect connects to sim with the certificate and key files (or PEM).
func connect(t *testing.T, sim *cloud.Sim, clientID string, cert tls.Certificate) (*device, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(sim.CA().Cert)
	d := &device{t: t, msgs: make(chan mqtt.Message, 16)}
	o := mqtt.NewClientOptions().
		AddBroker("ssl://" + sim.MQTTAddrs()[0]).
		SetClientID(clientID).
		SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost", MinVersion: tls.VersionTLS12}).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).
		SetProtocolVersion(4)
	d.c = mqtt.NewClient(o)
	tok := d.c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, os.ErrDeadlineExceeded
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	return d, nil
}

func connectClaim(t *testing.T, sim *cloud.Sim, clientID string) *device {
	t.Helper()
	e := sim.Endpoint()
	cert, err := tls.LoadX509KeyPair(e.ClaimCert, e.ClaimKey)
	if err != nil {
		t.Fatal(err)
	}
	d, err := connect(t, sim, clientID, cert)
	if err != nil {
		t.Fatalf("connect with the claim certificate: %v", err)
	}
	return d
}

// allowTemplate lets the claim certificate use template name too.
func allowTemplate(t *testing.T, sim *cloud.Sim, name string) {
	t.Helper()
	b, err := os.ReadFile(sim.Endpoint().ClaimCert)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sim.Registry().DescribeCertificate(pki.CertificateID(cert.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Registry().CreatePolicy("claim-"+name, provisioning.ClaimPolicyDocument(name)); err != nil {
		t.Fatal(err)
	}
	if err := sim.Registry().AttachPolicy("claim-"+name, c.ARN); err != nil {
		t.Fatal(err)
	}
}

func (d *device) subscribe(filters ...string) {
	d.t.Helper()
	for _, f := range filters {
		tok := d.c.Subscribe(f, 1, func(_ mqtt.Client, m mqtt.Message) { d.msgs <- m })
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			d.t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
}

// request subscribes to base/F/accepted and …/rejected, publishes body on
// base/F and returns the outcome ("accepted" or "rejected") and payload.
func (d *device) request(base, format string, body []byte) (string, []byte) {
	d.t.Helper()
	d.subscribe(base+"/"+format+"/accepted", base+"/"+format+"/rejected")
	tok := d.c.Publish(base+"/"+format, 1, false, body)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		d.t.Fatalf("publish %s: %v", base, tok.Error())
	}
	select {
	case m := <-d.msgs:
		switch m.Topic() {
		case base + "/" + format + "/accepted":
			return "accepted", m.Payload()
		case base + "/" + format + "/rejected":
			return "rejected", m.Payload()
		}
		d.t.Fatalf("unexpected message on %s", m.Topic())
	case <-time.After(15 * time.Second):
		d.t.Fatalf("no answer to %s", base)
	}
	return "", nil
}

func encodeAs(t *testing.T, format string, v any) []byte {
	t.Helper()
	var b []byte
	var err error
	if format == "cbor" {
		b, err = cbor.Marshal(v)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeAs(t *testing.T, format string, b []byte, v any) {
	t.Helper()
	var err error
	if format == "cbor" {
		err = cbor.Unmarshal(b, v)
	} else {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		t.Fatalf("decode %s %q: %v", format, b, err)
	}
}
