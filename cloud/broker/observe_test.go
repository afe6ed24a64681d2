package broker

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

func observeNow(t *testing.T, b *Broker, id string) ClientObservation {
	t.Helper()
	o, err := b.Observe(id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// pollObs waits for cond on the observation of id (the broker records a
// packet right after it is read or written).
func pollObs(t *testing.T, b *Broker, id, what string, cond func(ClientObservation) bool) ClientObservation {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		o := observeNow(t, b, id)
		if cond(o) {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, o)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The observation of a watched client id: its CONNECT attempts (refused
// ones with the reason), what its CONNECT asked for, session present,
// subscriptions, PINGREQs, its PUBLISHes with DUP and a withheld PUBACK
// marked, and the deliveries to it.
func TestObserveClient(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("dev")
	if _, err := e.b.Observe("dev"); !errors.Is(err, ErrNotWatched) {
		t.Fatalf("Observe before Watch: %v, want ErrNotWatched", err)
	}
	if err := e.b.Watch("dev"); err != nil {
		t.Fatal(err)
	}
	mustAddFault(t, e.b, Fault{Kind: FaultRefuseConnect, Client: "dev", Count: 1})
	c, err := e.dialRaw(e.b.Addrs()[0], &cert, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.connect(connectPacket("dev", 4, 45)); err == nil {
		t.Fatal("the refused CONNECT got a CONNACK")
	}
	c, err = e.dialRaw(e.b.Addrs()[0], &cert, 4)
	if err != nil {
		t.Fatal(err)
	}
	cp := connectPacket("dev", 4, 45)
	cp.Connect.Clean = false
	if ack, err := c.connect(cp); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect: %v %d", err, ack.ReasonCode)
	}
	if _, err := c.subscribe(1, "cmd/dev", "cfg/#"); err != nil {
		t.Fatal(err)
	}
	_ = c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	readType(t, c, packets.Pingresp)
	mustAddFault(t, e.b, Fault{Kind: FaultDrop, Packet: "puback", Client: "dev", Count: 1})
	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "up/dev", PacketID: 7, Payload: []byte("m")}
	_ = c.send(pub)
	pub.FixedHeader.Dup = true
	_ = c.send(pub)
	if pk := readType(t, c, packets.Puback); pk.PacketID != 7 {
		t.Fatalf("PUBACK %d, want 7 (the resend's)", pk.PacketID)
	}
	if err := e.b.Publish("cmd/dev", []byte("go"), 1); err != nil {
		t.Fatal(err)
	}
	if pk := readType(t, c, packets.Publish); pk.TopicName != "cmd/dev" {
		t.Fatalf("delivery on %s", pk.TopicName)
	}

	o := pollObs(t, e.b, "dev", "the delivery", func(o ClientObservation) bool { return o.DeliveriesTotal == 1 })
	if len(o.ConnectAttempts) != 2 || o.ConnectAttempts[0].Accepted || o.ConnectAttempts[0].Refused == "" || !o.ConnectAttempts[1].Accepted {
		t.Errorf("connect attempts %+v, want one refused then one accepted", o.ConnectAttempts)
	}
	if !o.Connected || o.Connects != 1 || o.ProtocolVersion != 4 || o.CleanSession || o.KeepAliveS != 45 || o.SessionPresent {
		t.Errorf("connection: %+v", o)
	}
	if fmt.Sprint(o.Subscriptions) != "[cfg/# cmd/dev]" || o.PingReqs != 1 || o.LastPingReq == nil {
		t.Errorf("subscriptions %v, pings %d", o.Subscriptions, o.PingReqs)
	}
	if len(o.Publishes) != 2 || !o.Publishes[0].AckWithheld || o.Publishes[0].Dup || !o.Publishes[1].Dup || o.Publishes[1].AckWithheld ||
		o.Publishes[0].PayloadHash != o.Publishes[1].PayloadHash || o.Publishes[1].PacketID != 7 || o.Publishes[1].Connection != o.Connection {
		t.Errorf("publishes %+v, want the withheld one, then its DUP resend", o.Publishes)
	}
	if len(o.Deliveries) != 1 || o.Deliveries[0].Topic != "cmd/dev" || o.Deliveries[0].QoS != 1 {
		t.Errorf("deliveries %+v", o.Deliveries)
	}

	// Reconnect: session present, the disconnect recorded.
	c.conn.Close()
	pollObs(t, e.b, "dev", "the disconnect", func(o ClientObservation) bool { return !o.Connected && o.DisconnectedAt != nil })
	c, err = e.dialRaw(e.b.Addrs()[0], &cert, 4)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := c.connect(cp); err != nil || !ack.SessionPresent {
		t.Fatalf("reconnect: %v, session present %v", err, ack.SessionPresent)
	}
	o = pollObs(t, e.b, "dev", "the reconnect", func(o ClientObservation) bool { return o.Connects == 2 })
	if !o.SessionPresent || !o.Connected || o.PingReqs != 0 || o.ConnectAttemptsTotal != 3 {
		t.Errorf("after the reconnect: %+v", o)
	}
	if err := e.b.Unwatch("dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Observe("dev"); !errors.Is(err, ErrNotWatched) {
		t.Errorf("Observe after Unwatch: %v", err)
	}
}

// What watching keeps is bounded: MaxObservedConnects attempts and
// MaxObservedPackets publishes per client id (the totals count all), and
// MaxWatches client ids.
func TestObserveBounded(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("dev")
	if err := e.b.Watch("dev"); err != nil {
		t.Fatal(err)
	}
	mustAddFault(t, e.b, Fault{Kind: FaultRefuseConnect, Client: "dev", Code: 5})
	const attempts = MaxObservedConnects + 5
	for range attempts {
		c, err := e.dialRaw(e.b.Addrs()[0], &cert, 4)
		if err != nil {
			t.Fatal(err)
		}
		if ack, err := c.connect(connectPacket("dev", 4, 60)); err != nil || ack.ReasonCode != 5 {
			t.Fatalf("refused connect: %v, code %d", err, ack.ReasonCode)
		}
	}
	o := observeNow(t, e.b, "dev")
	if len(o.ConnectAttempts) != MaxObservedConnects || o.ConnectAttemptsTotal != attempts {
		t.Errorf("%d attempts kept of %d, want %d of %d", len(o.ConnectAttempts), o.ConnectAttemptsTotal, MaxObservedConnects, attempts)
	}
	e.b.ClearFaults()
	c := e.rawConnected(cert, "dev")
	const pubs = MaxObservedPackets + 3
	for i := range pubs {
		if err := c.publish(fmt.Sprintf("t/%d", i), nil, 1, false); err != nil {
			t.Fatal(err)
		}
		readType(t, c, packets.Puback)
	}
	o = observeNow(t, e.b, "dev")
	if len(o.Publishes) != MaxObservedPackets || o.PublishesTotal != pubs || o.Publishes[0].Topic != "t/3" || o.Publishes[MaxObservedPackets-1].Topic != fmt.Sprintf("t/%d", pubs-1) {
		t.Errorf("%d publishes kept of %d (first %+v), want the last %d", len(o.Publishes), o.PublishesTotal, o.Publishes[0], MaxObservedPackets)
	}
	for i := 1; i < MaxWatches; i++ {
		if err := e.b.Watch(fmt.Sprintf("c%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.b.Watch("one-more"); !errors.Is(err, ErrTooManyWatches) {
		t.Errorf("watch %d: %v, want ErrTooManyWatches", MaxWatches+1, err)
	}
	if err := e.b.Watch("dev"); err != nil {
		t.Errorf("watching a watched client id again: %v", err)
	}
}
