package broker_test

import (
	"crypto/tls"
	"fmt"
	"os"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/pki"
)

// persistent connects a paho client with a persistent session (clean
// session off); every message it receives goes to the returned channel.
func persistent(t *testing.T, s *cloud.Sim, pair tls.Certificate, clientID string) (paho.Client, chan paho.Message) {
	t.Helper()
	msgs := make(chan paho.Message, 100)
	o := paho.NewClientOptions().
		AddBroker("ssl://" + s.MQTTAddrs()[0]).
		SetClientID(clientID).
		SetCleanSession(false).
		SetTLSConfig(&tls.Config{RootCAs: s.CA().Pool(), ServerName: "localhost", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(patience).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(patience) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", clientID, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, msgs
}

// TestSessionNotLeakedToAnotherCertificate is issue 11 item 2: box-1's
// persistent session holds three queued deltas; the claim certificate,
// allowed (here) to connect with client id box-1, takes the session over
// and receives none of them; box-1's own reconnect still gets all three.
func TestSessionNotLeakedToAnotherCertificate(t *testing.T) {
	s := cloudtest.Start(t, "")
	certPEM, keyPEM, err := s.CreateThing("box-1")
	if err != nil {
		t.Fatal(err)
	}
	box, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ep := s.Endpoint()
	claim, err := tls.LoadX509KeyPair(ep.ClaimCert, ep.ClaimKey)
	if err != nil {
		t.Fatal(err)
	}
	// A claim policy that lets it connect with any client id, as iotsim's
	// did before: the receive check alone must hold.
	claimPEM, _ := os.ReadFile(ep.ClaimCert)
	cc, err := pki.ParseCertificatePEM(claimPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registry().CreatePolicy("any-client", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`); err != nil {
		t.Fatal(err)
	}
	claimCert, err := s.Registry().DescribeCertificate(pki.CertificateID(cc.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Registry().AttachPolicy("any-client", claimCert.ARN); err != nil {
		t.Fatal(err)
	}

	const delta = "$aws/things/box-1/shadow/update/delta"
	c, _ := persistent(t, s, box, "box-1")
	if tok := c.Subscribe(delta, 1, nil); !tok.WaitTimeout(patience) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	c.Disconnect(0)
	for i := range 3 {
		if _, err := s.Shadows().Update("box-1", "", fmt.Appendf(nil, `{"state":{"desired":{"n":%d}}}`, i)); err != nil {
			t.Fatal(err)
		}
	}

	intruder, got := persistent(t, s, claim, "box-1")
	// Messages resent on a resumed session come before any answer to the
	// new connection's own packets: once this SUBACK is back, whatever was
	// resent has been delivered.
	if tok := intruder.Subscribe("$aws/certificates/create/json/accepted", 1, nil); !tok.WaitTimeout(patience) || tok.Error() != nil {
		t.Fatalf("claim subscribe: %v", tok.Error())
	}
	if n := len(got); n != 0 {
		m := <-got
		t.Fatalf("the claim certificate received %d of box-1's queued messages, e.g. %s %s", n, m.Topic(), m.Payload())
	}
	if total, _ := s.Broker().Withheld(); total != 3 {
		t.Errorf("withheld %d messages, want 3", total)
	}
	intruder.Disconnect(0)

	_, mine := persistent(t, s, box, "box-1")
	deadline := time.After(patience)
	for i := range 3 {
		select {
		case m := <-mine:
			if m.Topic() != delta {
				t.Errorf("box-1 got %s", m.Topic())
			}
		case <-deadline:
			t.Fatalf("box-1 got %d of its 3 queued deltas back", i)
		}
	}
	if _, dropped := s.Broker().Withheld(); dropped != 0 {
		t.Errorf("%d withheld messages dropped", dropped)
	}
}
