package broker

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
)

func TestNewValidation(t *testing.T) {
	if _, err := New(Options{}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("New(empty) = %v, want ErrInvalidOptions", err)
	}
	e := newEnv(t, nil)
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := e.b.Publish("a/b", nil, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	if err := e.b.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
}

func TestServiceCallsValidate(t *testing.T) {
	e := newEnv(t, nil)
	for name, err := range map[string]error{
		"publish wildcard":  e.b.Publish("a/+", nil, 0),
		"publish qos2":      e.b.Publish("a/b", nil, 2),
		"publishTo nobody":  e.b.PublishTo("nobody", "a/b", nil, 0),
		"publishTo bad qos": e.b.PublishTo("x", "a/b", nil, 2),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := e.b.PublishTo("nobody", "a/b", nil, 0); !errors.Is(err, ErrNoClient) {
		t.Errorf("PublishTo unknown client: %v, want ErrNoClient", err)
	}
}

// TestMutualTLSRefusals: every way a CONNECT is refused, and what the client
// sees (MQTT 3.1.1: the connection closes without CONNACK).
func TestMutualTLSRefusals(t *testing.T) {
	e := newEnv(t, nil)
	addr := e.b.Addrs()[0]
	goodA, _ := e.device("A")
	if _, err := e.reg.CreateThing("B", "", nil); err != nil {
		t.Fatal(err)
	}
	otherCA, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, otherKey, err := otherCA.NewKeysAndCertificate("x")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := tls.X509KeyPair(otherPEM, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	unregistered, _ := e.cert("")
	inactive, _ := e.cert(registry.StatusInactive)
	pending, _ := e.cert(registry.StatusPendingActivation)
	revoked, revokedID := e.cert(registry.StatusActive)
	if err := e.reg.UpdateCertificate(revokedID, registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}

	const (
		handshakeFails = "handshake fails"
		noConnack      = "closed without CONNACK"
		connack        = "CONNACK"
	)
	for _, tc := range []struct {
		name     string
		cert     *tls.Certificate
		clientID string
		version  byte
		want     string
		code     byte
	}{
		{"no client certificate", nil, "A", 4, handshakeFails, 0},
		{"certificate from another CA", &foreign, "A", 4, handshakeFails, 0},
		{"unregistered certificate", &unregistered, "A", 4, noConnack, 0},
		{"INACTIVE certificate", &inactive, "A", 4, noConnack, 0},
		{"REVOKED certificate", &revoked, "A", 4, noConnack, 0},
		{"PENDING_ACTIVATION certificate", &pending, "A", 4, noConnack, 0},
		{"thing A's certificate as client B", &goodA, "B", 4, noConnack, 0},
		{"client id over 128 bytes", &goodA, strings.Repeat("A", 129), 4, noConnack, 0},
		{"client id starting with $", &goodA, "$A", 4, noConnack, 0},
		{"empty client id", &goodA, "", 4, connack, 2},
		{"MQTT 3.1 empty client id", &goodA, "", 3, connack, 2},
		{"MQTT 5 unregistered certificate", &unregistered, "A", 5, connack, 0x87},
		{"MQTT 5 thing A as B", &goodA, "B", 5, connack, 0x87},
		{"MQTT 5 empty client id", &goodA, "", 5, connack, 0x85},
		{"MQTT 5 client id starting with $", &goodA, "$A", 5, connack, 0x85},
		{"accepted", &goodA, "A", 4, connack, 0},
		{"MQTT 5 accepted", &goodA, "A", 5, connack, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.dialRaw(addr, tc.cert, tc.version)
			if err != nil {
				if tc.want != handshakeFails {
					t.Fatalf("dial: %v", err)
				}
				return
			}
			ack, err := c.connect(connectPacket(tc.clientID, tc.version, 60))
			switch tc.want {
			case handshakeFails:
				var alert tls.AlertError
				var rerr interface{ Error() string }
				if err == nil || errors.Is(err, io.EOF) {
					t.Fatalf("got CONNACK or clean close (%v), want a TLS alert", err)
				}
				if !errors.As(err, &alert) && !errors.As(err, &rerr) {
					t.Fatalf("err %v", err)
				}
			case noConnack:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("got %+v, %v; want the connection closed with no CONNACK", ack.ReasonCode, err)
				}
			case connack:
				if err != nil {
					t.Fatalf("no CONNACK: %v", err)
				}
				if ack.ReasonCode != tc.code {
					t.Fatalf("CONNACK code %#x, want %#x", ack.ReasonCode, tc.code)
				}
				if tc.code != 0 {
					c.closedByBroker()
				}
			}
		})
	}
}

func TestExpiredCertificateRefused(t *testing.T) {
	e := newEnvWith(t, func(o *Options) {
		o.Now = func() time.Time { return pki.AWSNotAfter.Add(time.Hour) }
	})
	cert, _ := e.device("A")
	c, err := e.dialRaw(e.b.Addrs()[0], &cert, 4)
	if err == nil {
		_, err = c.connect(connectPacket("A", 4, 60))
	}
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("expired certificate: %v, want a TLS failure", err)
	}
}

func TestOwnTopicsAndServices(t *testing.T) {
	e := newEnv(t, nil)
	cert, certID := e.device("A")
	type call struct {
		p       Principal
		topic   string
		payload string
	}
	calls := make(chan call, 10)
	e.b.Handle("$aws/things/+/shadow/get", func(p *Principal, topic string, payload []byte) {
		calls <- call{*p, topic, string(payload)}
	})
	a := e.mustPaho(cert, "A")

	// Own application topic: subscribe, publish, receive.
	if err := wait(t, a.Subscribe("telemetry/A", 1, nil)); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, a.Publish("telemetry/A", 1, false, "t1")); err != nil {
		t.Fatal(err)
	}
	if m := a.next(t); m.Topic() != "telemetry/A" || string(m.Payload()) != "t1" {
		t.Errorf("got %s %q", m.Topic(), m.Payload())
	}

	// $aws wildcard subscription, fed by a service Publish.
	if err := wait(t, a.Subscribe("$aws/things/A/shadow/get/+", 1, nil)); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, a.Publish("$aws/things/A/shadow/get", 1, false, "{}")); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-calls:
		want := call{topic: "$aws/things/A/shadow/get", payload: "{}",
			p: Principal{ClientID: "A", CertificateID: certID, ThingName: "A", ServerName: "localhost"}}
		if diff := cmp.Diff(want, c, cmp.AllowUnexported(call{}), cmpopts.IgnoreFields(Principal{}, "RemoteAddr", "Certificate")); diff != "" {
			t.Errorf("handler call (-want +got):\n%s", diff)
		}
		if c.p.Certificate == nil || pki.CertificateID(c.p.Certificate.Raw) != certID || !strings.HasPrefix(c.p.RemoteAddr, "127.0.0.1:") {
			t.Errorf("principal certificate/remote: %v", c.p.RemoteAddr)
		}
	case <-time.After(waitFor):
		t.Fatal("handler not called")
	}
	if err := e.b.Publish("$aws/things/B/shadow/get/accepted", []byte("not for A"), 1); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Publish("$aws/things/A/shadow/get/accepted", []byte("state"), 1); err != nil {
		t.Fatal(err)
	}
	if m := a.next(t); m.Topic() != "$aws/things/A/shadow/get/accepted" || string(m.Payload()) != "state" {
		t.Errorf("got %s %q, want the shadow reply", m.Topic(), m.Payload())
	}
}

func TestAuthorizationDenied(t *testing.T) {
	e := newEnv(t, nil)
	cert, _ := e.device("A")
	for _, tc := range []struct {
		name string
		act  func(c *rawClient) error
	}{
		{"subscribe #", func(c *rawClient) error { _, err := c.subscribe(0, "#"); return err }},
		{"subscribe +/x", func(c *rawClient) error { _, err := c.subscribe(0, "+/x"); return err }},
		{"subscribe other thing", func(c *rawClient) error { _, err := c.subscribe(0, "telemetry/A", "telemetry/B"); return err }},
		{"subscribe other shadow", func(c *rawClient) error { _, err := c.subscribe(1, "$aws/things/B/shadow/#"); return err }},
		{"publish other thing", func(c *rawClient) error { return c.publish("telemetry/B", []byte("x"), 0, false) }},
		{"publish other shadow qos1", func(c *rawClient) error { return c.publish("$aws/things/B/shadow/update", []byte("x"), 1, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.rawConnected(cert, "A")
			if err := tc.act(c); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			for _, pk := range c.closedByBroker() {
				if pk.FixedHeader.Type == packets.Suback || pk.FixedHeader.Type == packets.Puback {
					t.Errorf("got ack type %d, want the connection closed", pk.FixedHeader.Type)
				}
			}
		})
	}

	t.Run("MQTT 5 gets reason codes", func(t *testing.T) {
		c, err := e.dialRaw(e.b.Addrs()[0], &cert, 5)
		if err != nil {
			t.Fatal(err)
		}
		if ack, err := c.connect(connectPacket("A", 5, 60)); err != nil || ack.ReasonCode != 0 {
			t.Fatalf("connect: %v %v", ack.ReasonCode, err)
		}
		codes, err := c.subscribe(1, "telemetry/A", "#")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]byte{1, 0x87}, codes); diff != "" {
			t.Errorf("SUBACK codes (-want +got):\n%s", diff)
		}
		if err := c.publish("telemetry/B", []byte("x"), 1, false); err != nil {
			t.Fatal(err)
		}
		ack, err := c.read()
		if err != nil || ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != 0x87 {
			t.Fatalf("PUBACK %+v %v, want reason 0x87", ack.ReasonCode, err)
		}
	})
}

func TestPublishToOneClient(t *testing.T) {
	e := newEnv(t, allowAll{})
	certX, _ := e.device("X")
	certY, _ := e.device("Y")
	x := e.rawConnected(certX, "X")
	y := e.rawConnected(certY, "Y")
	for _, c := range []*rawClient{x, y} {
		if _, err := c.subscribe(1, "jobs/+"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.b.PublishTo("X", "jobs/x", []byte("only-x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := e.b.PublishTo("Y", "other/x", []byte("not subscribed"), 1); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Publish("jobs/x", []byte("all"), 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    *rawClient
		want []string
	}{{x, []string{"only-x", "all"}}, {y, []string{"all"}}} {
		var got []string
		for range tc.want {
			pk, err := tc.c.nextPublish()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(pk.Payload))
			if string(pk.Payload) == "only-x" {
				if pk.FixedHeader.Qos != 1 || pk.PacketID == 0 {
					t.Errorf("PublishTo qos %d id %d", pk.FixedHeader.Qos, pk.PacketID)
				}
				if err := tc.c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("received (-want +got):\n%s", diff)
		}
	}
}

func TestALPNOnSecondListener(t *testing.T) {
	e := newEnv(t, nil, "127.0.0.1:0", "127.0.0.1:0")
	addrs := e.b.Addrs()
	if len(addrs) != 2 || addrs[0] == addrs[1] || strings.HasSuffix(addrs[1], ":0") {
		t.Fatalf("Addrs() = %v", addrs)
	}
	cert, _ := e.device("A")
	a, err := e.paho(addrs[1], cert, "A", ALPNMQTTCert)
	if err != nil {
		t.Fatalf("connect with ALPN %s: %v", ALPNMQTTCert, err)
	}
	if err := wait(t, a.Subscribe("telemetry/A", 0, nil)); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, a.Publish("telemetry/A", 0, false, "x")); err != nil {
		t.Fatal(err)
	}
	a.next(t)

	// An ALPN name AWS accepts but iotsim does not serve yet: closed.
	c, err := e.dialRaw(addrs[1], &cert, 4, ALPNHTTPCert)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.conn.ConnectionState().NegotiatedProtocol; got != ALPNHTTPCert {
		t.Errorf("negotiated %q", got)
	}
	if _, err := c.connect(connectPacket("A", 4, 60)); !errors.Is(err, io.EOF) {
		t.Errorf("MQTT on %s: %v, want closed", ALPNHTTPCert, err)
	}
	// A name AWS does not know: the handshake fails.
	if c, err := e.dialRaw(addrs[1], &cert, 4, "foo"); err == nil {
		if _, err := c.connect(connectPacket("A", 4, 60)); err == nil {
			t.Error("ALPN foo: connected")
		}
	}
}

func TestDuplicateClientIDTakeover(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("A")
	monCert, _ := e.device("mon")
	mon := e.mustPaho(monCert, "mon")
	if err := wait(t, mon.Subscribe("$aws/events/presence/disconnected/A", 1, nil)); err != nil {
		t.Fatal(err)
	}
	first := e.mustPaho(cert, "A")
	second := e.mustPaho(cert, "A")
	first.waitLost(t)
	if err := wait(t, second.Subscribe("telemetry/A", 1, nil)); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, second.Publish("telemetry/A", 1, false, "still here")); err != nil {
		t.Fatal(err)
	}
	if m := second.next(t); string(m.Payload()) != "still here" {
		t.Errorf("got %q", m.Payload())
	}
	var ev PresenceEvent
	if err := json.Unmarshal(mon.next(t).Payload(), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.DisconnectReason != ReasonDuplicateClientID || ev.ClientInitiatedDisconnect == nil || *ev.ClientInitiatedDisconnect {
		t.Errorf("disconnected event %+v, want DUPLICATE_CLIENTID", ev)
	}
}

func TestCertificateDeactivatedDisconnects(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, id := e.device("A")
	monCert, _ := e.device("mon")
	mon := e.mustPaho(monCert, "mon")
	if err := wait(t, mon.Subscribe("$aws/events/presence/disconnected/+", 1, nil)); err != nil {
		t.Fatal(err)
	}
	a := e.mustPaho(cert, "A")
	if err := e.reg.UpdateCertificate(id, registry.StatusInactive); err != nil {
		t.Fatal(err)
	}
	a.waitLost(t)
	var ev PresenceEvent
	if err := json.Unmarshal(mon.next(t).Payload(), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.ClientID != "A" || ev.DisconnectReason != ReasonAuthError {
		t.Errorf("event %+v, want A AUTH_ERROR", ev)
	}
	if _, err := e.paho(e.b.Addrs()[0], cert, "A"); err == nil {
		t.Error("reconnect with an INACTIVE certificate succeeded")
	}
	if err := e.reg.UpdateCertificate(id, registry.StatusActive); err != nil {
		t.Fatal(err)
	}
	e.mustPaho(cert, "A")
}

var sessionRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestLifecycleEvents(t *testing.T) {
	now := time.Now().Add(time.Minute).Truncate(time.Millisecond) // fixed: timestamps are known
	e := newEnvWith(t, func(o *Options) {
		o.Authorizer = allowAll{}
		o.Now = func() time.Time { return now }
	})
	monCert, _ := e.device("mon")
	mon := e.mustPaho(monCert, "mon")
	if err := wait(t, mon.Subscribe("$aws/events/+/+/D", 1, nil)); err != nil {
		t.Fatal(err)
	}
	cert, certID := e.device("D")
	next := func() (string, map[string]any) {
		m := mon.next(t)
		var v map[string]any
		if err := json.Unmarshal(m.Payload(), &v); err != nil {
			t.Fatal(err)
		}
		if s, _ := v["sessionIdentifier"].(string); !sessionRE.MatchString(s) {
			t.Errorf("sessionIdentifier %v", v["sessionIdentifier"])
		}
		delete(v, "sessionIdentifier")
		return m.Topic(), v
	}
	check := func(wantTopic string, want map[string]any) {
		t.Helper()
		topic, got := next()
		if topic != wantTopic {
			t.Errorf("topic %s, want %s", topic, wantTopic)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", wantTopic, diff)
		}
	}
	ts := float64(now.UnixMilli())
	base := func(extra map[string]any) map[string]any {
		m := map[string]any{"clientId": "D", "timestamp": ts, "principalIdentifier": certID}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	d := e.mustPaho(cert, "D")
	check("$aws/events/presence/connected/D", base(map[string]any{"eventType": "connected", "ipAddress": "127.0.0.1", "versionNumber": 1.0}))
	if err := wait(t, d.Subscribe("a/b", 1, nil)); err != nil {
		t.Fatal(err)
	}
	check("$aws/events/subscriptions/subscribed/D", base(map[string]any{"eventType": "subscribed", "topics": []any{"a/b"}}))
	if err := wait(t, d.Unsubscribe("a/b")); err != nil {
		t.Fatal(err)
	}
	check("$aws/events/subscriptions/unsubscribed/D", base(map[string]any{"eventType": "unsubscribed", "topics": []any{"a/b"}}))
	d.Disconnect(100)
	check("$aws/events/presence/disconnected/D", base(map[string]any{
		"eventType": "disconnected", "versionNumber": 1.0, "clientInitiatedDisconnect": true, "disconnectReason": ReasonClientInitiatedDisconnect}))

	for i, tc := range []struct {
		reason string
		end    func(c *rawClient)
	}{
		{ReasonConnectionLost, func(c *rawClient) { _ = c.conn.NetConn().(*net.TCPConn).SetLinger(0); c.conn.NetConn().Close() }},
		{ReasonClientError, func(c *rawClient) { _ = c.publish("a/+", nil, 0, false) }},
		{ReasonAuthError, nil}, // the certificate is deactivated, below
		{ReasonAPIInitiatedDisconnect, func(*rawClient) { e.b.Disconnect("D") }},
	} {
		c := e.rawConnected(cert, "D")
		check("$aws/events/presence/connected/D", base(map[string]any{"eventType": "connected", "ipAddress": "127.0.0.1", "versionNumber": float64(i + 2)}))
		if tc.reason == ReasonAuthError {
			// Deactivating the certificate is the AUTH_ERROR path.
			if err := e.reg.UpdateCertificate(certID, registry.StatusInactive); err != nil {
				t.Fatal(err)
			}
		} else {
			tc.end(c)
		}
		check("$aws/events/presence/disconnected/D", base(map[string]any{
			"eventType": "disconnected", "versionNumber": float64(i + 2), "clientInitiatedDisconnect": false, "disconnectReason": tc.reason}))
		if tc.reason == ReasonAuthError {
			if err := e.reg.UpdateCertificate(certID, registry.StatusActive); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestLimits checks AWS IoT's broker limits, each on a fresh connection.
func TestLimits(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("L")
	publishQoS1 := func(topic string, payload []byte, retain bool) func(*rawClient) ([]byte, error) {
		return func(c *rawClient) ([]byte, error) {
			if err := c.publish(topic, payload, 1, retain); err != nil {
				return nil, err
			}
			pk, err := c.read()
			if err != nil {
				return nil, err
			}
			return []byte{pk.FixedHeader.Type, pk.ReasonCode}, nil
		}
	}
	subscribe := func(qos byte, filters ...string) func(*rawClient) ([]byte, error) {
		return func(c *rawClient) ([]byte, error) { return c.subscribe(qos, filters...) }
	}
	nFilters := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, prefix+string(rune('a'+i%26))+string(rune('a'+i/26)))
		}
		return out
	}
	puback := []byte{packets.Puback, 0}
	for _, tc := range []struct {
		name string
		act  func(c *rawClient) ([]byte, error)
		want []byte // nil: the connection must be closed
	}{
		{"QoS 2 publish", func(c *rawClient) ([]byte, error) { return nil, c.publish("a/b", nil, 2, false) }, nil},
		{"topic of 256 bytes", publishQoS1(strings.Repeat("t", 256), nil, false), puback},
		{"topic of 257 bytes", publishQoS1(strings.Repeat("t", 257), nil, false), nil},
		{"topic with 7 slashes", publishQoS1("1/2/3/4/5/6/7/8", nil, false), puback},
		{"topic with 8 slashes", publishQoS1("1/2/3/4/5/6/7/8/9", nil, false), nil},
		{"Basic Ingest prefix not counted", publishQoS1("$aws/rules/r/1/2/3/4/5/6/7/8", nil, false), puback},
		{"+ in topic name", publishQoS1("a/+", nil, false), nil},
		{"# in topic name", publishQoS1("a/#", nil, false), nil},
		{"payload of 128 KiB", publishQoS1("a/b", make([]byte, 128*1024), false), puback},
		{"payload of 128 KiB + 1", publishQoS1("a/b", make([]byte, 128*1024+1), false), nil},
		{"payload of 200 KiB", publishQoS1("a/b", make([]byte, 200*1024), false), nil},
		{"retain on $aws topic", publishQoS1("$aws/things/L/shadow/update", []byte("x"), true), nil},
		{"retain on a normal topic", publishQoS1("r/L", []byte("x"), true), puback},
		{"8 filters in a SUBSCRIBE", subscribe(0, nFilters("f/", 8)...), make([]byte, 8)},
		{"9 filters in a SUBSCRIBE", subscribe(0, nFilters("f/", 9)...), nil},
		{"QoS 2 subscribe granted QoS 1", subscribe(2, "q/2"), []byte{1}},
		{"invalid filter", subscribe(0, "a/#/b"), nil},
		{"filter with 8 slashes", subscribe(0, "1/2/3/4/5/6/7/8/+"), nil},
		{"51st subscription refused", func(c *rawClient) ([]byte, error) {
			all := nFilters("s/", 50)
			for i := 0; i < 50; i += 8 {
				codes, err := c.subscribe(0, all[i:min(i+8, 50)]...)
				if err != nil || bytes.ContainsFunc(codes, func(r rune) bool { return r != 0 }) {
					return codes, err
				}
			}
			// An existing filter is not a new subscription; a new one is refused.
			return c.subscribe(1, all[0], "s/new")
		}, []byte{1, 0x80}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.rawConnected(cert, "L")
			got, err := tc.act(c)
			if tc.want == nil {
				if err == nil {
					c.closedByBroker()
				} else if !errors.Is(err, io.EOF) && !isReset(err) {
					t.Fatalf("error %v, want the connection closed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

func TestTopicSemantics(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("S")
	pubCert, _ := e.device("P")
	pub := e.rawConnected(pubCert, "P")
	publish := func(topic string, retain bool) {
		t.Helper()
		if err := pub.publish(topic, []byte(topic), 1, retain); err != nil {
			t.Fatal(err)
		}
		if ack, err := pub.read(); err != nil || ack.FixedHeader.Type != packets.Puback {
			t.Fatalf("no PUBACK: %v", err)
		}
	}
	nextTopic := func(c *rawClient) (string, bool) {
		t.Helper()
		pk, err := c.nextPublish()
		if err != nil {
			t.Fatal(err)
		}
		return pk.TopicName, pk.FixedHeader.Retain
	}

	t.Run("# does not match the parent", func(t *testing.T) {
		s := e.rawConnected(cert, "S")
		if _, err := s.subscribe(0, "sensor/#"); err != nil {
			t.Fatal(err)
		}
		publish("sensor", false)
		publish("sensor/", false)
		publish("sensor/x", false)
		var got []string
		for range 2 {
			topic, _ := nextTopic(s)
			got = append(got, topic)
		}
		if diff := cmp.Diff([]string{"sensor/", "sensor/x"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("retained only for exact filters", func(t *testing.T) {
		publish("r/a", true)
		s := e.rawConnected(cert, "S")
		if _, err := s.subscribe(0, "r/+"); err != nil {
			t.Fatal(err)
		}
		publish("r/b", false)
		if topic, retain := nextTopic(s); topic != "r/b" || retain {
			t.Errorf("after wildcard subscribe got %s retain=%v, want live r/b", topic, retain)
		}
		if _, err := s.subscribe(0, "r/a"); err != nil {
			t.Fatal(err)
		}
		if topic, retain := nextTopic(s); topic != "r/a" || !retain {
			t.Errorf("after exact subscribe got %s retain=%v, want retained r/a", topic, retain)
		}
	})

	t.Run("leading wildcard skips $ topics", func(t *testing.T) {
		s := e.rawConnected(cert, "S")
		if _, err := s.subscribe(0, "#"); err != nil {
			t.Fatal(err)
		}
		if err := e.b.Publish("$aws/things/S/shadow/update/accepted", nil, 0); err != nil {
			t.Fatal(err)
		}
		publish("plain", false)
		if topic, _ := nextTopic(s); topic != "plain" {
			t.Errorf("got %s, want plain", topic)
		}
	})

	t.Run("MQTT 5 CONNACK properties", func(t *testing.T) {
		for _, tc := range []struct {
			keepalive, want uint16
			flag            bool
		}{{0, 1200, true}, {5, 30, true}, {60, 0, false}, {1201, 1200, true}} {
			c, err := e.dialRaw(e.b.Addrs()[0], &cert, 5)
			if err != nil {
				t.Fatal(err)
			}
			pk := connectPacket("S", 5, tc.keepalive)
			pk.Properties.SessionExpiryInterval = 7200
			pk.Properties.SessionExpiryIntervalFlag = true
			ack, err := c.connect(pk)
			if err != nil {
				t.Fatal(err)
			}
			p := ack.Properties
			if p.ServerKeepAliveFlag != tc.flag || (tc.flag && p.ServerKeepAlive != tc.want) {
				t.Errorf("keepalive %d: server keep alive %v %d, want %v %d", tc.keepalive, p.ServerKeepAliveFlag, p.ServerKeepAlive, tc.flag, tc.want)
			}
			if !p.MaximumQosFlag || p.MaximumQos != 1 {
				t.Errorf("maximum QoS %v %d, want 1", p.MaximumQosFlag, p.MaximumQos)
			}
			if p.SessionExpiryInterval != MaxSessionExpiry {
				t.Errorf("session expiry %d, want %d", p.SessionExpiryInterval, MaxSessionExpiry)
			}
			if p.ReceiveMaximum != ReceiveMaximum {
				t.Errorf("receive maximum %d", p.ReceiveMaximum)
			}
		}
	})
}
