package broker

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

func mustAddFault(t *testing.T, b *Broker, f Fault) FaultStatus {
	t.Helper()
	st, err := b.AddFault(f)
	if err != nil {
		t.Fatalf("AddFault %+v: %v", f, err)
	}
	return st
}

// injected returns how often fault id was injected.
func injected(t *testing.T, b *Broker, id string) int64 {
	t.Helper()
	for _, f := range b.Faults().Faults {
		if f.ID == id {
			return f.Injected
		}
	}
	t.Fatalf("no fault %q in %+v", id, b.Faults())
	return 0
}

func readType(t *testing.T, c *rawClient, typ byte) packets.Packet {
	t.Helper()
	pk, err := c.read()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if pk.FixedHeader.Type != typ {
		t.Fatalf("got packet type %d (id %d), want %d", pk.FixedHeader.Type, pk.PacketID, typ)
	}
	return pk
}

func TestFaultDropAndDelayAcks(t *testing.T) {
	logs := &logBuffer{}
	logs.records(`msg="fault injected"`)
	e := newEnvWith(t, func(o *Options) {
		o.Authorizer = allowAll{}
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	cert, _ := e.device("dev")
	c := e.rawConnected(cert, "dev")

	// PUBACK: the first on a/# is dropped; the PUBLISH was processed.
	drop := mustAddFault(t, e.b, Fault{Kind: FaultDrop, Packet: "puback", Client: "de*", Topic: "a/#", Count: 1})
	for _, topic := range []string{"a/1", "a/2"} {
		if err := c.publish(topic, []byte("x"), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	if pk := readType(t, c, packets.Puback); pk.PacketID != 2 {
		t.Fatalf("first PUBACK is for id %d, want 2 (id 1's dropped)", pk.PacketID)
	}
	if n := injected(t, e.b, drop.ID); n != 1 {
		t.Errorf("drop injected %d times, want 1", n)
	}

	// PUBACK delayed: the later one overtakes it.
	delay := mustAddFault(t, e.b, Fault{Kind: FaultDelay, Packet: "puback", Topic: "slow/+", Delay: Duration(200 * time.Millisecond)})
	start := time.Now()
	_ = c.publish("slow/1", nil, 1, false) // id 3
	_ = c.publish("fast/1", nil, 1, false) // id 4
	if pk := readType(t, c, packets.Puback); pk.PacketID != 4 {
		t.Fatalf("PUBACK %d first, want 4", pk.PacketID)
	}
	if pk := readType(t, c, packets.Puback); pk.PacketID != 3 {
		t.Fatalf("PUBACK %d second, want 3", pk.PacketID)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("delayed PUBACK came after %v, want >= 200ms", d)
	}
	if n := injected(t, e.b, delay.ID); n != 1 {
		t.Errorf("delay injected %d times, want 1", n)
	}

	// SUBACK, UNSUBACK and PINGRESP: the first of each is dropped.
	for _, p := range []string{"suback", "unsuback", "pingresp"} {
		mustAddFault(t, e.b, Fault{Kind: FaultDrop, Packet: p, Count: 1})
	}
	sub := func(id uint16) packets.Packet {
		return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id,
			Filters: packets.Subscriptions{{Filter: "s/#", Qos: 1}}}
	}
	_ = c.send(sub(10))
	_ = c.send(sub(11))
	if pk := readType(t, c, packets.Suback); pk.PacketID != 11 {
		t.Errorf("SUBACK for %d, want 11", pk.PacketID)
	}
	unsub := func(id uint16) packets.Packet {
		return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: id,
			Filters: packets.Subscriptions{{Filter: "s/#"}}}
	}
	_ = c.send(unsub(12))
	_ = c.send(unsub(13))
	if pk := readType(t, c, packets.Unsuback); pk.PacketID != 13 {
		t.Errorf("UNSUBACK for %d, want 13", pk.PacketID)
	}
	ping := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}
	_ = c.send(ping)
	_ = c.send(ping)
	_ = c.publish("a/3", nil, 1, false) // id 5, after the pings
	readType(t, c, packets.Pingresp)
	if pk := readType(t, c, packets.Puback); pk.PacketID != 5 {
		t.Errorf("PUBACK for %d after one PINGRESP, want 5 (one PINGRESP dropped)", pk.PacketID)
	}

	r := e.b.Faults()
	if r.Injected != 5 || len(r.Events) != 5 {
		t.Errorf("report: %d injected, %d events, want 5 and 5: %+v", r.Injected, len(r.Events), r.Events)
	}
	if ev := r.Events[0]; ev.Fault != drop.ID || ev.Client != "dev" || ev.Topic != "a/1" || ev.Detail != "puback dropped" {
		t.Errorf("first event = %+v", ev)
	}
	if n, _ := logs.records(`msg="fault injected"`); n != 5 {
		t.Errorf("%d injections logged, want 5:\n%s", n, logs)
	}
	for _, f := range r.Faults {
		if f.Count == 1 && f.Active {
			t.Errorf("fault %s used up its count and is still active", f.ID)
		}
	}
}

func TestFaultConnack(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("dev")
	addr := e.b.Addrs()[0]

	mustAddFault(t, e.b, Fault{Kind: FaultDrop, Packet: "connack", Client: "dev", Count: 1})
	c, err := e.dialRaw(addr, &cert, 4)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = c.connect(connectPacket("dev", 4, 60))
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connect with the CONNACK dropped: %v, want a timeout", err)
	}
	c.conn.Close()

	mustAddFault(t, e.b, Fault{Kind: FaultDelay, Packet: "connack", Client: "dev", Count: 1, Delay: Duration(150 * time.Millisecond)})
	start := time.Now()
	c = e.rawConnected(cert, "dev")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("delayed CONNACK after %v", d)
	}
	c.conn.Close()
}

func TestFaultRefuseConnect(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("dev")
	addr := e.b.Addrs()[0]
	try := func(version byte) (packets.Packet, error) {
		c, err := e.dialRaw(addr, &cert, version)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		return c.connect(connectPacket("dev", version, 60))
	}
	for _, tc := range []struct {
		name    string
		f       Fault
		version byte
		code    byte // 0: closed without CONNACK
	}{
		{"hang up", Fault{Kind: FaultRefuseConnect}, 4, 0},
		{"code 3.1.1", Fault{Kind: FaultRefuseConnect, Code: 3}, 4, 3},
		{"code 3.1.1 to v5", Fault{Kind: FaultRefuseConnect, Code: 5}, 5, 0x87},
		{"code v5 to 3.1.1", Fault{Kind: FaultRefuseConnect, Code: 0x88}, 4, 3},
		{"throttle 3.1.1", Fault{Kind: FaultThrottleConnect}, 4, 0},
		{"throttle v5", Fault{Kind: FaultThrottleConnect}, 5, 0x9F},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.Count = 1
			st := mustAddFault(t, e.b, tc.f)
			ack, err := try(tc.version)
			if tc.code == 0 {
				if err == nil {
					t.Fatalf("got CONNACK %d, want the connection closed", ack.ReasonCode)
				}
			} else if err != nil || ack.ReasonCode != tc.code {
				t.Fatalf("CONNACK %d, %v; want code %d", ack.ReasonCode, err, tc.code)
			}
			if n := injected(t, e.b, st.ID); n != 1 {
				t.Errorf("injected %d, want 1", n)
			}
			// The count is used up: the next CONNECT is accepted.
			if ack, err := try(tc.version); err != nil || ack.ReasonCode != 0 {
				t.Fatalf("next connect: %d, %v", ack.ReasonCode, err)
			}
		})
	}
	if s := e.b.Stats(); s.ConnectsThrottled != 2 {
		t.Errorf("ConnectsThrottled = %d, want 2", s.ConnectsThrottled)
	}
}

func TestFaultClose(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("dev")

	mustAddFault(t, e.b, Fault{Kind: FaultCloseAfter, Packets: 3, Count: 1})
	c := e.rawConnected(cert, "dev")
	for i := range 3 {
		if err := c.publish("t/x", nil, 1, false); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			readType(t, c, packets.Puback)
		}
	}
	if seen := c.closedByBroker(); len(seen) != 0 {
		t.Errorf("read %d packets before the close, want none", len(seen))
	}

	var handled atomic.Int32
	e.b.Handle("bye/#", func(*Principal, string, []byte) { handled.Add(1) })
	mustAddFault(t, e.b, Fault{Kind: FaultCloseOnPublish, Topic: "bye/+"})
	c = e.rawConnected(cert, "dev")
	_ = c.publish("hello/1", nil, 1, false)
	readType(t, c, packets.Puback)
	_ = c.publish("bye/1", nil, 1, false)
	if seen := c.closedByBroker(); len(seen) != 0 {
		t.Errorf("read %v before the close, want no PUBACK", seen)
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("the closing PUBLISH reached %d handlers, want 0", n)
	}
}

func TestFaultDeliveries(t *testing.T) {
	e := newEnv(t, allowAll{})
	subCert, _ := e.device("sub")
	pubCert, _ := e.device("pub")
	sub := e.rawConnected(subCert, "sub")
	if _, err := sub.subscribe(1, "d/#"); err != nil {
		t.Fatal(err)
	}
	pub := e.rawConnected(pubCert, "pub")

	mustAddFault(t, e.b, Fault{Kind: FaultDuplicate, Client: "sub", Topic: "d/twice", Count: 1})
	mustAddFault(t, e.b, Fault{Kind: FaultDrop, Packet: "publish", Client: "sub", Topic: "d/lost"})
	mustAddFault(t, e.b, Fault{Kind: FaultDelay, Packet: "publish", Client: "sub", Topic: "d/late", Delay: Duration(200 * time.Millisecond)})
	for _, topic := range []string{"d/twice", "d/lost", "d/late", "d/on-time"} {
		if err := pub.publish(topic, []byte(topic), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var got []string
	for range 4 {
		pk, err := sub.nextPublish()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		name := pk.TopicName
		if pk.FixedHeader.Dup {
			name += "(dup)"
		}
		got = append(got, name)
		_ = sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	}
	want := "d/twice d/twice(dup) d/on-time d/late"
	if strings.Join(got, " ") != want {
		t.Errorf("deliveries %v, want %s", got, want)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("delayed delivery after %v", d)
	}
}

func TestFaultThrottleServices(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("dev")
	var handled atomic.Int32
	e.b.Handle("$aws/things/+/#", func(*Principal, string, []byte) { handled.Add(1) })
	c := e.rawConnected(cert, "dev")
	if _, err := c.subscribe(1, "$aws/things/dev/shadow/update/rejected", "$aws/things/dev/jobs/start-next/rejected"); err != nil {
		t.Fatal(err)
	}
	mustAddFault(t, e.b, Fault{Kind: FaultThrottleShadow, Client: "dev", Count: 1})
	mustAddFault(t, e.b, Fault{Kind: FaultThrottleJobs, Topic: "$aws/things/+/jobs/start-next", Count: 1})

	for _, tc := range []struct{ topic, want string }{
		{"$aws/things/dev/shadow/update", `"code":429`},
		{"$aws/things/dev/jobs/start-next", `"code":"RequestThrottled"`},
	} {
		if err := c.publish(tc.topic, []byte(`{"clientToken":"tok-1"}`), 1, false); err != nil {
			t.Fatal(err)
		}
		pk, err := c.nextPublish()
		if err != nil {
			t.Fatal(err)
		}
		if pk.TopicName != tc.topic+"/rejected" || !strings.Contains(string(pk.Payload), tc.want) ||
			!strings.Contains(string(pk.Payload), `"clientToken":"tok-1"`) {
			t.Errorf("reply %s %s, want %s/rejected with %s and the client token", pk.TopicName, pk.Payload, tc.topic, tc.want)
		}
		_ = c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("throttled requests reached %d handlers, want 0", n)
	}
	// Counts used up: the next request is served.
	_ = c.publish("$aws/things/dev/shadow/get", nil, 1, false)
	for {
		pk, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if pk.FixedHeader.Type == packets.Puback && pk.PacketID == c.nextID {
			break
		}
	}
	if n := handled.Load(); n != 1 {
		t.Errorf("handlers called %d times after the throttle, want 1", n)
	}
}

func TestFaultExpireSession(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("dev")
	addr := e.b.Addrs()[0]
	persistent := func() (*rawClient, bool) {
		t.Helper()
		c, err := e.dialRaw(addr, &cert, 4)
		if err != nil {
			t.Fatal(err)
		}
		pk := connectPacket("dev", 4, 60)
		pk.Connect.Clean = false
		ack, err := c.connect(pk)
		if err != nil || ack.ReasonCode != 0 {
			t.Fatalf("connect: %d %v", ack.ReasonCode, err)
		}
		return c, ack.SessionPresent
	}
	leave := func(c *rawClient) {
		_ = c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
		c.closedByBroker()
	}
	c, _ := persistent()
	if _, err := c.subscribe(1, "s/1"); err != nil {
		t.Fatal(err)
	}
	leave(c)
	st := mustAddFault(t, e.b, Fault{Kind: FaultExpireSession, Client: "dev", Count: 1})
	c, present := persistent()
	if present {
		t.Fatal("session present after the expire-session fault")
	}
	if n := injected(t, e.b, st.ID); n != 1 {
		t.Errorf("injected %d, want 1", n)
	}
	// The subscription went with the session.
	if err := e.b.Publish("s/1", []byte("x"), 1); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if pk, err := c.read(); err == nil {
		t.Fatalf("got %v from the expired subscription", pk)
	}
	c.conn.Close()
	// The new session is persistent again.
	c, _ = persistent()
	if _, err := c.subscribe(1, "s/2"); err != nil {
		t.Fatal(err)
	}
	leave(c)
	c, present = persistent()
	if !present {
		t.Error("session not present on the next connect: the fault's session was not persistent")
	}
	c.conn.Close()
}

func TestFaultDisconnect(t *testing.T) {
	e := newEnv(t, allowAll{})
	cert, _ := e.device("dev")
	old, err := e.dialRaw(e.b.Addrs()[0], &cert, 5)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := old.connect(connectPacket("dev", 5, 60)); err != nil || ack.ReasonCode != 0 {
		t.Fatal(ack.ReasonCode, err)
	}
	// At once, for connections already up (the 24-hour disconnect, on demand).
	st := mustAddFault(t, e.b, Fault{Kind: FaultDisconnect, Client: "dev"})
	seen := old.closedByBroker()
	if len(seen) != 1 || seen[0].FixedHeader.Type != packets.Disconnect || seen[0].ReasonCode != 0xA0 {
		t.Errorf("MQTT 5 client got %+v, want DISCONNECT 0xA0 (maximum connect time)", seen)
	}
	if err := e.b.RemoveFault(st.ID); err != nil {
		t.Fatal(err)
	}
	// At an age, for new connections.
	mustAddFault(t, e.b, Fault{Kind: FaultDisconnect, Client: "dev", After: Duration(200 * time.Millisecond)})
	start := time.Now()
	c := e.rawConnected(cert, "dev")
	c.closedByBroker()
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("closed after %v, want >= 200ms", d)
	}
	if n := e.b.ClearFaults(); n != 1 {
		t.Errorf("ClearFaults = %d, want 1", n)
	}
	if r := e.b.Faults(); len(r.Faults) != 0 || r.Injected != 2 {
		t.Errorf("after clear: %+v, want no faults and 2 injections", r)
	}
}

func TestFaultBounds(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	b := newEnvWith(t, func(o *Options) { o.Now = func() time.Time { return time.Unix(0, now.Load()) } }).b
	st := mustAddFault(t, b, Fault{Kind: FaultDuplicate, Duration: Duration(time.Minute)})
	half := mustAddFault(t, b, Fault{Kind: FaultCloseOnPublish, Topic: "x", Probability: 0.5})
	hits := 0
	for range 1000 {
		set := b.faults.set.Load()
		if b.pick(set, FaultDuplicate, "", "c", "t", false, nil, "") == nil {
			t.Fatal("duplicate not picked while active")
		}
		if b.pick(set, FaultCloseOnPublish, "", "c", "x", false, nil, "") != nil {
			hits++
		}
	}
	if hits < 350 || hits > 650 {
		t.Errorf("probability 0.5 fired %d of 1000 times", hits)
	}
	if n := injected(t, b, half.ID); n != int64(hits) {
		t.Errorf("counted %d, fired %d", n, hits)
	}
	now.Add(int64(time.Minute))
	if b.pick(b.faults.set.Load(), FaultDuplicate, "", "c", "t", false, nil, "") != nil {
		t.Error("picked after its duration")
	}
	r := b.Faults()
	if r.Faults[0].ID != st.ID || r.Faults[0].Active || r.Faults[0].Injected != 1000 {
		t.Errorf("expired fault: %+v", r.Faults[0])
	}
	if len(r.Events) != MaxFaultEvents || r.Injected != int64(1000+hits) {
		t.Errorf("%d events, %d injected; want %d and %d", len(r.Events), r.Injected, MaxFaultEvents, 1000+hits)
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"dev", "dev", true}, {"dev", "dev1", false}, {"*", "", true}, {"dev-*", "dev-1", true},
		{"*-1", "dev-1", true}, {"*-1", "dev-2", false}, {"a*b*c", "axxbyyc", true}, {"a*b*c", "acb", false},
		{"a*a", "a", false}, {"box-*-eu", "box-7-eu", true}, {"a*", "a", true}, {"*a*", "bab", true}, {"**", "x", true}, {"*b", "ab", true}, {"a*b", "ab", true},
	} {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func TestParseFaults(t *testing.T) {
	fs, err := ParseFaults([]byte(`{"faults":[{"id":"lossy","kind":"drop","packet":"puback","client":"box-*","probability":0.3},
		{"kind":"delay","packet":"publish","delay":"1.5s","duration":"10m"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0].ID != "lossy" || fs[0].Probability != 0.3 || time.Duration(fs[1].Delay) != 1500*time.Millisecond ||
		time.Duration(fs[1].Duration) != 10*time.Minute {
		t.Errorf("parsed %+v", fs)
	}
	for _, tc := range []struct{ doc, want string }{
		{`[]`, "not a {\"faults\""},
		{`{"faults":[{"kind":"explode"}]}`, `faults[0]: invalid fault: kind "explode"`},
		{`{"faults":[{"kind":"drop"}]}`, `faults[0]: invalid fault: packet ""`},
		{`{"faults":[{"kind":"drop","packet":"puback"},{"id":"x","kind":"delay","packet":"puback"}]}`, `faults[1] (id "x"): invalid fault: delay: kind delay needs a positive delay`},
		{`{"faults":[{"kind":"drop","packet":"puback","colour":"red"}]}`, `faults[0]: json: unknown field "colour"`},
		{`{"faults":[{"kind":"delay","packet":"puback","delay":"soon"}]}`, `faults[0]: time: invalid duration "soon"`},
		{`{"faults":[{"kind":"close-after"},{"kind":"refuse-connect","code":7,"probability":2}]}`, `faults[1]: invalid fault: code 7`},
		{`{"faults":[{"id":"a","kind":"duplicate"},{"id":"a","kind":"duplicate"}]}`, `faults[1] (id "a"): invalid fault: id also used by faults[0]`},
		{`{"faults":[{"kind":"close-on-publish","topic":"a/#/b"}]}`, `topic "a/#/b"`},
	} {
		_, err := ParseFaults([]byte(tc.doc))
		if !errors.Is(err, ErrInvalidFault) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFaults(%s) = %v, want ErrInvalidFault naming %q", tc.doc, err, tc.want)
		}
	}
}

func FuzzParseFaults(f *testing.F) {
	f.Add([]byte(`{"faults":[{"kind":"drop","packet":"puback","client":"a*","topic":"x/#","count":2,"duration":"1s"}]}`))
	f.Add([]byte(`{"faults":[{"kind":"refuse-connect","code":135},{"kind":"disconnect","after":"24h"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := ParseFaults(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidFault) {
				t.Fatalf("error %v does not wrap ErrInvalidFault", err)
			}
			return
		}
		for _, f := range fs {
			if err := f.Validate(); err != nil {
				t.Fatalf("accepted %+v: %v", f, err)
			}
		}
	})
}
