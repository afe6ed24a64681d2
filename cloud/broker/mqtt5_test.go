package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mochi-mqtt/server/v2/packets"
)

// paho5 connects an MQTT 5 client (eclipse/paho.golang) over TLS; its
// messages arrive on the returned channel.
func (e *env) paho5(cert tls.Certificate, clientID string, clean bool) (*paho.Client, <-chan *paho.Publish) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	conn, err := (&tls.Dialer{Config: e.tlsConfig(&cert)}).DialContext(ctx, "tcp", e.b.Addrs()[0])
	if err != nil {
		e.t.Fatal(err)
	}
	msgs := make(chan *paho.Publish, 100)
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			msgs <- r.Packet
			return true, nil
		}},
	})
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 60, CleanStart: clean})
	if err != nil {
		e.t.Fatalf("MQTT 5 connect %s: %v", clientID, err)
	}
	if ack.ReasonCode != 0 {
		e.t.Fatalf("MQTT 5 connect %s: CONNACK 0x%02x", clientID, ack.ReasonCode)
	}
	e.t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, msgs
}

// TestMQTT5PublishAckAndExpiry: a QoS 1 PUBLISH with or without user
// properties is acknowledged with reason code 0x00 (mochi answered 0x01,
// undefined for PUBACK, when the PUBLISH had properties), and a message
// published without a Message Expiry Interval reaches an MQTT 5 subscriber
// without one (mochi added about three years).
func TestMQTT5PublishAckAndExpiry(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("D")
	c, msgs := e.paho5(cert, "D", true)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	expiry := uint32(120)
	for _, tc := range []struct {
		name  string
		props *paho.PublishProperties
	}{
		{"no properties", nil},
		{"user properties", &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}},
		{"message expiry", &paho.PublishProperties{MessageExpiry: &expiry}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Publish(ctx, &paho.Publish{Topic: "t/x", QoS: 1, Payload: []byte(tc.name), Properties: tc.props})
			if err != nil {
				t.Fatal(err)
			}
			if resp.ReasonCode != 0 {
				t.Errorf("PUBACK reason code 0x%02x, want 0x00", resp.ReasonCode)
			}
			var got *paho.Publish
			select {
			case got = <-msgs:
			case <-ctx.Done():
				t.Fatal("message not delivered")
			}
			if string(got.Payload) != tc.name {
				t.Fatalf("delivered %q", got.Payload)
			}
			var wantExpiry *uint32
			var wantUser paho.UserProperties
			if tc.props != nil {
				wantExpiry, wantUser = tc.props.MessageExpiry, tc.props.User
			}
			if got.Properties == nil {
				got.Properties = &paho.PublishProperties{}
			}
			switch ge := got.Properties.MessageExpiry; {
			case wantExpiry == nil && ge != nil:
				t.Errorf("delivered with Message Expiry Interval %d, want none", *ge)
			case wantExpiry != nil && (ge == nil || *ge == 0 || *ge > *wantExpiry):
				t.Errorf("delivered Message Expiry Interval %v, want 1..%d", ge, *wantExpiry)
			}
			if diff := cmp.Diff(wantUser, got.Properties.User, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("delivered user properties (-want +got):\n%s", diff)
			}
		})
	}
	if got := e.b.Stats().ReasonCodesReplaced; got != 0 {
		t.Errorf("ReasonCodesReplaced = %d, want 0", got)
	}
}

// TestConnackCodeForProtocolVersion: mochi refuses a CONNECT with a QoS 2
// will before the broker sees it, with CONNACK 0x9B ("QoS not
// supported"), which MQTT 3.1.1 does not define (return codes 0-5); a
// 3.1.1 client gets 5 (not authorized), an MQTT 5 client 0x9B.
func TestConnackCodeForProtocolVersion(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("W")
	for _, tc := range []struct {
		version byte
		want    byte
	}{{4, 5}, {5, 0x9B}} {
		c, err := e.dialRaw(e.b.Addrs()[0], &cert, tc.version)
		if err != nil {
			t.Fatal(err)
		}
		pk := connectPacket("W", tc.version, 60)
		pk.Connect.WillFlag, pk.Connect.WillQos, pk.Connect.WillTopic, pk.Connect.WillPayload = true, 2, "w/W", []byte("gone")
		ack, err := c.connect(pk)
		if err != nil || ack.ReasonCode != tc.want {
			t.Errorf("MQTT %d CONNECT with a QoS 2 will: CONNACK 0x%02x %v, want 0x%02x", tc.version, ack.ReasonCode, err, tc.want)
		}
	}
}

// TestTakeoverClosesMQTT311WithoutDisconnect: MQTT 3.1.1 has no DISCONNECT
// from the server; the connection taken over by a newer one with the same
// client id is closed (mochi wrote a DISCONNECT 0x8E to it), while an MQTT
// 5 connection gets DISCONNECT 0x8E (session taken over).
func TestTakeoverClosesMQTT311WithoutDisconnect(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			e := newEnv(t, allowAll{})
			cert, _ := e.device("A")
			first, err := e.dialRaw(e.b.Addrs()[0], &cert, version)
			if err != nil {
				t.Fatal(err)
			}
			if ack, err := first.connect(connectPacket("A", version, 60)); err != nil || ack.ReasonCode != 0 {
				t.Fatalf("connect: 0x%02x %v", ack.ReasonCode, err)
			}
			e.rawConnected(cert, "A")
			seen := first.closedByBroker()
			var types []byte
			for _, pk := range seen {
				types = append(types, pk.FixedHeader.Type)
			}
			switch {
			case version == 4 && len(seen) != 0:
				t.Errorf("MQTT 3.1.1 connection taken over received packets of types %v, want none", types)
			case version == 5 && (len(seen) != 1 || seen[0].FixedHeader.Type != packets.Disconnect || seen[0].ReasonCode != 0x8E):
				t.Errorf("MQTT 5 connection taken over received %+v, want DISCONNECT 0x8e", seen)
			}
		})
	}
}
