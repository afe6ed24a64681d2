package broker

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mochi-mqtt/server/v2/packets"
)

// denyPrefix allows everything except topics and filters under "deny/".
type denyPrefix struct{ allowAll }

func (denyPrefix) Publish(_ *Principal, topic string, _ bool) bool {
	return !strings.HasPrefix(topic, "deny/")
}
func (denyPrefix) Subscribe(_ *Principal, f string) bool { return !strings.HasPrefix(f, "deny/") }

func TestClientMetrics(t *testing.T) {
	e := newEnv(t, denyPrefix{})
	monCert, _ := e.device("mon")
	mon := e.mustPaho(monCert, "mon")
	if err := wait(t, mon.Subscribe("$aws/events/presence/disconnected/D", 1, nil)); err != nil {
		t.Fatal(err)
	}
	cert, _ := e.device("D")
	addr := e.b.Addrs()[0]

	c, err := e.dialRaw(addr, &cert, 5)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := c.connect(connectPacket("D", 5, 60)); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect: %v %v", ack.ReasonCode, err)
	}
	codes, err := c.subscribe(1, "x/D", "deny/x")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]byte{1, 0x87}, codes); diff != "" {
		t.Errorf("SUBACK (-want +got):\n%s", diff)
	}
	if err := c.publish("deny/y", []byte("zz"), 1, false); err != nil {
		t.Fatal(err)
	}
	if ack, err := c.read(); err != nil || ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != 0x87 {
		t.Fatalf("PUBACK %v %v, want 0x87", ack.ReasonCode, err)
	}
	if err := c.publish("x/D", []byte("hello"), 1, false); err != nil {
		t.Fatal(err)
	}
	if pk, err := c.nextPublish(); err != nil || string(pk.Payload) != "hello" {
		t.Fatalf("delivery %q %v", pk.Payload, err)
	}

	// A refused CONNECT with the same client id: an unregistered certificate.
	bad, _ := e.cert("")
	rc, err := e.dialRaw(addr, &bad, 5)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := rc.connect(connectPacket("D", 5, 60)); err == nil && ack.ReasonCode == 0 {
		t.Fatal("unregistered certificate connected")
	}

	c.conn.Close()
	if m := mon.next(t); m.Topic() != "$aws/events/presence/disconnected/D" {
		t.Fatalf("event on %s", m.Topic())
	}
	want := ClientMetrics{
		ConnectionAttempts: 2, Disconnects: 1, AuthorizationFailures: 3,
		MessagesSent: 1, BytesSent: 5, MessagesReceived: 1, BytesReceived: 5, LargestMessageSent: 5,
		SourceIP: "127.0.0.1",
	}
	if diff := cmp.Diff(want, e.b.ClientMetrics("D")); diff != "" {
		t.Errorf("ClientMetrics(D) (-want +got):\n%s", diff)
	}
	all := e.b.AllClientMetrics()
	if diff := cmp.Diff(want, all["D"]); diff != "" {
		t.Errorf("AllClientMetrics()[D] (-want +got):\n%s", diff)
	}
	// mon received the disconnected event.
	if all["mon"].ConnectionAttempts != 1 || all["mon"].MessagesReceived != 1 {
		t.Errorf("AllClientMetrics()[mon] = %+v", all["mon"])
	}
	if got := e.b.ClientMetrics("nobody"); got != (ClientMetrics{}) {
		t.Errorf("ClientMetrics(nobody) = %+v, want zero", got)
	}
}

func BenchmarkMetricsSent(b *testing.B) {
	var st clientState
	for b.Loop() {
		st.sentMessage(100)
	}
}
