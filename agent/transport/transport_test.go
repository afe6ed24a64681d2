package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/google/go-cmp/cmp"
	"github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"

	"github.com/iotagent/iotagent/agent/outbox"
)

func waitConnected(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
}

func TestConnectTLS(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name string
		alpn bool
		want hello
	}{
		{"port 8883 style", false, hello{serverName: serverName, clientCN: "pi-RPI-0042"}},
		{"port 443 ALPN", true, hello{serverName: serverName, offered: []string{ALPNProtocol}, negotiated: ALPNProtocol, clientCN: "pi-RPI-0042"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBroker(t, p, "127.0.0.1:0", nil)
			signs := p.signer.signs.Load()
			onConnect := make(chan struct{}, 10)
			c := newTestClient(t, p, b.addr, func(o *Options) {
				o.ALPN = tt.alpn
				o.OnConnect = func(ctx context.Context) {
					onConnect <- struct{}{}
					<-ctx.Done() // runs until the disconnect
				}
			})
			stop := runClient(t, c)
			waitConnected(t, c)
			got := recv(t, b.hellos, "TLS handshake")
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(hello{})); diff != "" {
				t.Errorf("server saw (-want +got):\n%s", diff)
			}
			if p.signer.signs.Load() == signs {
				t.Error("the opaque crypto.Signer was never asked to sign")
			}
			recv(t, onConnect, "OnConnect")
			if !c.Connected() {
				t.Error("Connected() = false while connected")
			}
			stop()
			st := c.Stats()
			if st.LastAttempt.IsZero() {
				t.Error("Stats.LastAttempt not set after a connection")
			}
			st.LastAttempt = time.Time{}
			if diff := cmp.Diff(Stats{Connects: 1, Disconnects: 1}, st); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSubscribeAndResubscribeAfterBrokerRestart(t *testing.T) {
	p := newPKI(t)
	b1 := startBroker(t, p, "127.0.0.1:0", nil)
	connected := make(chan struct{}, 10)
	c := newTestClient(t, p, b1.addr, func(o *Options) {
		o.OnConnect = func(context.Context) { connected <- struct{}{} }
	})
	got := make(chan string, 10)
	if err := c.Subscribe("cmd/+/set", 1, func(topic string, payload []byte) {
		got <- topic + "=" + string(payload)
	}); err != nil {
		t.Fatal(err)
	}
	stop := runClient(t, c)

	if diff := cmp.Diff([]string{"cmd/+/set"}, recv(t, b1.hook.subscribed, "SUBSCRIBE on broker 1")); diff != "" {
		t.Errorf("broker 1 filters (-want +got):\n%s", diff)
	}
	recv(t, connected, "OnConnect 1")
	if err := b1.srv.Publish("cmd/led/set", []byte("on"), false, 1); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got, "message from broker 1"); m != "cmd/led/set=on" {
		t.Errorf("got %q", m)
	}

	// A fresh broker on the same port has no session: the client must
	// subscribe again by itself.
	b1.stop()
	b2 := startBroker(t, p, b1.addr, nil)
	if diff := cmp.Diff([]string{"cmd/+/set"}, recv(t, b2.hook.subscribed, "SUBSCRIBE on broker 2")); diff != "" {
		t.Errorf("broker 2 filters (-want +got):\n%s", diff)
	}
	recv(t, connected, "OnConnect 2")
	if err := b2.srv.Publish("cmd/fan/set", []byte("off"), false, 1); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got, "message from broker 2"); m != "cmd/fan/set=off" {
		t.Errorf("got %q", m)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := c.WaitSubscribed(wctx); err != nil {
		t.Errorf("WaitSubscribed on broker 2: %v", err)
	}
	wcancel()
	if st := c.Stats(); st.Subscriptions != 1 || st.Subscribed != 1 {
		t.Errorf("Stats subscriptions %d, subscribed %d on broker 2; want 1 and 1", st.Subscriptions, st.Subscribed)
	}

	// Subscribing while connected subscribes at once.
	if err := c.Subscribe("cfg/#", 0, func(topic string, payload []byte) { got <- "cfg:" + topic }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cfg/#"}, recv(t, b2.hook.subscribed, "late SUBSCRIBE")); diff != "" {
		t.Errorf("late filters (-want +got):\n%s", diff)
	}
	if err := b2.srv.Publish("cfg/a/b", []byte("1"), false, 0); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got, "message on the late subscription"); m != "cfg:cfg/a/b" {
		t.Errorf("got %q", m)
	}
	stop()
	st := c.Stats()
	if st.Connects != 2 || st.Delivered != 3 || st.Disconnects != 2 {
		t.Errorf("Stats = %+v, want Connects 2, Delivered 3, Disconnects 2", st)
	}
}

func openOutbox(t *testing.T) *outbox.Outbox {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "agent.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ob, err := outbox.Open(db, outbox.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// TestOutboxDrainAcrossReconnect queues messages offline. The first broker
// accepts 49, receives the 50th but drops the connection before its PUBACK
// (so it must arrive again), and then drops the connection on every
// PUBLISH: QoS 1 publishes are in flight, un-acked, when the connection
// goes. A fresh broker on the same port then accepts everything.
func TestOutboxDrainAcrossReconnect(t *testing.T) {
	const n, firstBroker = 200, 50
	p := newPKI(t)
	ob := openOutbox(t)
	for i := range n {
		if _, err := ob.Append("dt/pi-RPI-0042/telemetry", []byte(strconv.Itoa(i)), outbox.Class(i%2)); err != nil {
			t.Fatal(err)
		}
	}
	var reads atomic.Int32
	hook1 := &recHook{published: make(chan packets.Packet, 10000)}
	hook1.readFilter = func(pk packets.Packet) error {
		if pk.FixedHeader.Type != packets.Publish {
			return nil
		}
		switch k := reads.Add(1); {
		case k < firstBroker:
			return nil
		case k == firstBroker:
			hook1.published <- pk // received, never acknowledged
		}
		return fmt.Errorf("test: drop the connection: %w", packets.ErrRejectPacket)
	}
	b1 := startBroker(t, p, "127.0.0.1:0", hook1)
	c := newTestClient(t, p, b1.addr, func(o *Options) {
		o.Outbox = ob
		o.Logger = testLogger(t)
		// paho's write timeout: a publish racing the dropped connection
		// can hold Run's return this long.
		o.ConnectTimeout = 2 * time.Second
	})
	stop := runClient(t, c)

	var arrivals []int
	take := func(b *broker) {
		pk := recv(t, b.hook.published, "outbox message")
		i, err := strconv.Atoi(string(pk.Payload))
		if err != nil {
			t.Fatalf("payload %q", pk.Payload)
		}
		if pk.FixedHeader.Qos != 1 {
			t.Errorf("message %d QoS %d, want 1", i, pk.FixedHeader.Qos)
		}
		arrivals = append(arrivals, i)
	}
	for range firstBroker {
		take(b1)
	}
	t.Logf("stopping broker 1")
	b1.stop()
	b2 := startBroker(t, p, b1.addr, nil)
	seen := map[int]int{}
	for _, i := range arrivals {
		seen[i]++
	}
	for len(seen) < n {
		take(b2)
		seen[arrivals[len(arrivals)-1]]++
	}
	// Every message arrived; in order of first arrival.
	var firsts []int
	first := map[int]bool{}
	for _, i := range arrivals {
		if !first[i] {
			first[i] = true
			firsts = append(firsts, i)
		}
	}
	for k := range firsts {
		if firsts[k] != k {
			t.Fatalf("first arrivals out of order at %d: %v", k, firsts)
		}
	}
	t.Logf("%d messages, %d arrivals, %d duplicates, %d connects", n, len(arrivals), len(arrivals)-n, c.Stats().Connects)
	if seen[firstBroker-1] < 2 {
		t.Errorf("message %d, received without PUBACK, arrived %d times; want it sent again", firstBroker-1, seen[firstBroker-1])
	}

	// The outbox empties once the PUBACKs are in (bounded poll: there is no
	// event for "acked").
	for deadline := time.Now().Add(10 * time.Second); ob.Stats().Len != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("outbox still holds %d messages", ob.Stats().Len)
		}
	}
	// A message appended while connected goes out at once (Ready).
	if _, err := ob.Append("alarm/pi-RPI-0042", []byte("9999"), outbox.Alarm); err != nil {
		t.Fatal(err)
	}
	for {
		take(b2)
		if arrivals[len(arrivals)-1] == 9999 {
			break
		}
	}
	stop()
	if st := c.Stats(); st.Published < n || st.Connects < 2 {
		t.Errorf("Stats = %+v, want Published >= %d, Connects >= 2", st, n)
	}
}

func TestPublish(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, p, "127.0.0.1:0", nil)
	c := newTestClient(t, p, b.addr, nil)
	ctx := context.Background()

	if err := c.Publish(ctx, "a/b", 1, nil); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish before Run: %v, want ErrNotConnected", err)
	}
	for _, bad := range []struct {
		topic   string
		qos     byte
		payload []byte
	}{
		{"a/#", 1, nil},
		{"", 1, nil},
		{"a", 2, nil},
		{"a", 1, make([]byte, 200<<10)},
		{strings.Repeat("x", 300), 0, nil},
	} {
		if err := c.Publish(ctx, bad.topic, bad.qos, bad.payload); !errors.Is(err, ErrInvalid) {
			t.Errorf("Publish(%.10q, qos %d, %d bytes): %v, want ErrInvalid", bad.topic, bad.qos, len(bad.payload), err)
		}
	}

	stop := runClient(t, c)
	waitConnected(t, c)
	for qos := range byte(2) {
		topic := fmt.Sprintf("$aws/things/pi-RPI-0042/shadow/get/%d", qos)
		if err := c.Publish(ctx, topic, qos, []byte("{}")); err != nil {
			t.Fatalf("Publish qos %d: %v", qos, err)
		}
		if pk := recv(t, b.hook.published, "publish"); pk.TopicName != topic {
			t.Errorf("broker got topic %q, want %q", pk.TopicName, topic)
		}
	}
	stop()
	if err := c.Publish(ctx, "a/b", 1, nil); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish after Run: %v, want ErrNotConnected", err)
	}
	if got := c.Stats().Published; got != 2 {
		t.Errorf("Published = %d, want 2", got)
	}
}

// fakeClock advances only when the fake sleep is called.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// TestNoConnackBackoff: a server that closes the connection after the
// CONNECT without a CONNACK (AWS's refusal) is a failed attempt; the client
// backs off with full jitter (here the random source returns the top of the
// range) and keeps CONNECTs for its client ID at least 1 s apart.
func TestNoConnackBackoff(t *testing.T) {
	p := newPKI(t)
	hellos := make(chan hello, 100)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", p.serverTLS(hellos))
	if err != nil {
		t.Fatal(err)
	}
	firstBytes := make(chan byte, 100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			var b [1]byte
			if _, err := io.ReadFull(conn, b[:]); err == nil {
				firstBytes <- b[0]
			}
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })

	c := newTestClient(t, p, ln.Addr().String(), func(o *Options) {
		o.BackoffMin, o.BackoffMax = 500*time.Millisecond, 3*time.Second
	})
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	sleeps := make(chan time.Duration)
	c.minConnectGap = time.Second
	c.now = clock.Now
	c.rand = func(n int64) int64 { return n - 1 }
	c.sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case sleeps <- d:
			clock.advance(d)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	stop := runClient(t, c)
	// backoff 500ms, then 500ms more to keep CONNECTs 1s apart; then the
	// backoff alone: 1s, 2s, 3s (capped).
	want := []time.Duration{500 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}
	var got []time.Duration
	for range want {
		got = append(got, recv(t, sleeps, "backoff sleep"))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sleeps (-want +got):\n%s", diff)
	}
	if b := recv(t, firstBytes, "CONNECT"); b != 0x10 {
		t.Errorf("first byte after TLS = %#x, want CONNECT (0x10)", b)
	}
	stop()
	st := c.Stats()
	if st.Connects != 0 || st.ConnectFailures < 5 || st.LastError == "" || st.Connected {
		t.Errorf("Stats = %+v, want no connects, >= 5 failures, a LastError", st)
	}
}

// rawServer is a minimal MQTT server: it accepts with TLS, answers CONNECT
// with CONNACK and reports every PUBLISH, but never sends PUBACK.
type rawServer struct {
	addr     string
	connects chan struct{}
	pubs     chan string
}

func startRawServer(t *testing.T, p *testPKI) *rawServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", p.serverTLS(make(chan hello, 100)))
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{addr: ln.Addr().String(), connects: make(chan struct{}, 100), pubs: make(chan string, 100)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				for {
					pk, err := pahopackets.ReadPacket(conn)
					if err != nil {
						return
					}
					switch pk := pk.(type) {
					case *pahopackets.ConnectPacket:
						s.connects <- struct{}{}
						ack := pahopackets.NewControlPacket(pahopackets.Connack).(*pahopackets.ConnackPacket)
						if ack.Write(conn) != nil {
							return
						}
					case *pahopackets.PublishPacket:
						s.pubs <- string(pk.Payload)
					case *pahopackets.PingreqPacket:
						resp := pahopackets.NewControlPacket(pahopackets.Pingresp)
						if resp.Write(conn) != nil {
							return
						}
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// TestNoPubackReconnectsAndResends: a broker that silently discards a QoS 1
// publish must not stall the outbox or Run: after the ack timeout the client
// reconnects and sends the message again; it stays queued until acked.
func TestNoPubackReconnectsAndResends(t *testing.T) {
	p := newPKI(t)
	srv := startRawServer(t, p)
	ob := openOutbox(t)
	if _, err := ob.Append("dt/x", []byte("m1"), outbox.Alarm); err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, p, srv.addr, func(o *Options) { o.Outbox = ob })
	c.ackTimeout = 50 * time.Millisecond
	stop := runClient(t, c)
	for i := range 2 {
		recv(t, srv.connects, fmt.Sprintf("CONNECT %d", i))
		if got := recv(t, srv.pubs, fmt.Sprintf("PUBLISH %d", i)); got != "m1" {
			t.Errorf("publish %d = %q, want m1", i, got)
		}
	}
	stop()
	if got := ob.Stats().Len; got != 1 {
		t.Errorf("outbox Len = %d, want 1 (never acked)", got)
	}
}

// TestPublishNoPubackReconnects: a direct Publish whose PUBACK never comes
// returns after the ack timeout, and the client reconnects (MQTT resends
// only on a new connection). It used to wait as long as the connection
// lived: a jobs update stalled its job (issue 16's lossy-acks).
func TestPublishNoPubackReconnects(t *testing.T) {
	p := newPKI(t)
	srv := startRawServer(t, p)
	c := newTestClient(t, p, srv.addr, nil)
	c.ackTimeout = 50 * time.Millisecond
	stop := runClient(t, c)
	recv(t, srv.connects, "CONNECT")
	waitConnected(t, c)
	errc := make(chan error, 1)
	go func() { errc <- c.Publish(context.Background(), "$aws/things/x/jobs/j/update", 1, []byte("u")) }()
	if got := recv(t, srv.pubs, "PUBLISH"); got != "u" {
		t.Errorf("PUBLISH %q, want u", got)
	}
	err := recv(t, errc, "Publish to return")
	if !errors.Is(err, ErrNoAck) || !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish: %v, want ErrNoAck and ErrNotConnected", err)
	}
	recv(t, srv.connects, "the reconnect")
	if got := c.Stats().PublishFailures; got != 1 {
		t.Errorf("PublishFailures = %d, want 1", got)
	}
	stop()
}

func TestPublishHonoursContext(t *testing.T) {
	p := newPKI(t)
	srv := startRawServer(t, p)
	c := newTestClient(t, p, srv.addr, nil)
	stop := runClient(t, c)
	waitConnected(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Publish(ctx, "$aws/things/x/shadow/get", 1, nil) }()
	recv(t, srv.pubs, "PUBLISH")
	cancel()
	if err := recv(t, errc, "Publish to return"); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish: %v, want context.Canceled", err)
	}
	stop()
}

// TestCancelWhileConnecting: a server that accepts TCP and never answers
// the TLS handshake must not delay Run's return.
func TestCancelWhileConnecting(t *testing.T) {
	p := newPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	t.Cleanup(func() { ln.Close() })
	c := newTestClient(t, p, ln.Addr().String(), func(o *Options) { o.ConnectTimeout = time.Hour })
	stop := runClient(t, c)
	conn := recv(t, accepted, "TCP connection")
	defer conn.Close()
	stop() // fails the test if Run does not return or leaks
}

func TestRunTwice(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, p, "127.0.0.1:0", nil)
	c := newTestClient(t, p, b.addr, nil)
	stop := runClient(t, c)
	waitConnected(t, c)
	if err := c.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
	stop()
}

func TestNewValidates(t *testing.T) {
	p := newPKI(t)
	good := func() Options {
		return Options{Broker: "127.0.0.1:8883", ServerName: serverName, Certificate: p.clientCert, ClientID: "thing"}
	}
	tests := []struct {
		name   string
		change func(*Options)
		want   string // substring of the error; "" for success
	}{
		{"valid", func(*Options) {}, ""},
		{"host name gives SNI by default", func(o *Options) { o.Broker, o.ServerName = "iot.example:443", "" }, ""},
		{"IP broker without server name", func(o *Options) { o.ServerName = "" }, "server name"},
		{"no port", func(o *Options) { o.Broker = "127.0.0.1" }, "broker"},
		{"bad port", func(o *Options) { o.Broker = "h:99999" }, "broker"},
		{"empty client id", func(o *Options) { o.ClientID = "" }, "client id"},
		{"reserved client id", func(o *Options) { o.ClientID = "$aws" }, "client id"},
		{"long client id", func(o *Options) { o.ClientID = strings.Repeat("a", 129) }, "client id"},
		{"no certificate", func(o *Options) { o.Certificate = tls.Certificate{} }, "certificate"},
		{"key not a signer", func(o *Options) { o.Certificate.PrivateKey = "pem" }, "crypto.Signer"},
		{"keep-alive too short", func(o *Options) { o.KeepAlive = 5 * time.Second }, "keep-alive"},
		{"negative timeout", func(o *Options) { o.ConnectTimeout = -1 }, "connect timeout"},
		{"backoff min > max", func(o *Options) { o.BackoffMin, o.BackoffMax = time.Minute, time.Second }, "backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.change(&o)
			_, err := New(o)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid)):
				t.Errorf("New: %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
	// Every problem is reported at once.
	o := good()
	o.ClientID, o.Broker = "", "nope"
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "client id") || !strings.Contains(err.Error(), "broker") {
		t.Errorf("New with two problems: %v", err)
	}
}

func TestSubscribeValidates(t *testing.T) {
	p := newPKI(t)
	c := newTestClient(t, p, "127.0.0.1:1", nil)
	h := func(string, []byte) {}
	for _, tt := range []struct {
		filter string
		qos    byte
		h      Handler
	}{
		{"", 0, h}, {"a/#/b", 0, h}, {"a/b#", 0, h}, {"a/+b", 0, h}, {"a", 2, h}, {"a", 0, nil},
	} {
		if err := c.Subscribe(tt.filter, tt.qos, tt.h); !errors.Is(err, ErrInvalid) {
			t.Errorf("Subscribe(%q, %d): %v, want ErrInvalid", tt.filter, tt.qos, err)
		}
	}
	for i := range maxSubscriptions {
		if err := c.Subscribe(fmt.Sprintf("s/%d", i), 1, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Subscribe("s/0", 0, h); err != nil {
		t.Errorf("replacing a subscription at the limit: %v", err)
	}
	if err := c.Subscribe("one/too/many", 1, h); !errors.Is(err, ErrInvalid) {
		t.Errorf("51st subscription: %v, want ErrInvalid", err)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/#", "a/b/c", true},
		{"a/#", "a", true},
		{"#", "a/b", true},
		{"+/+", "a/b", true},
		{"+", "a/b", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"#", "$aws/things/x", false},
		{"+/things/x", "$aws/things/x", false},
		{"$aws/things/+/shadow/#", "$aws/things/pi/shadow/update/delta", true},
		{"$share/g/a/+", "a/b", true},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
	}
	for _, tt := range tests {
		t.Run(tt.filter+" "+tt.topic, func(t *testing.T) {
			if got := match(tt.filter, tt.topic); got != tt.want {
				t.Errorf("match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
			}
		})
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("a/+/c", "a/b/c")
	f.Add("#", "$aws/x")
	f.Add("$share/g/a/#", "a")
	f.Add("a//#", "a//")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		got := match(filter, topic) // must not panic
		if validateFilter(filter) != nil || validateTopic(topic) != nil {
			return
		}
		if !strings.ContainsAny(filter, "+#") && !strings.HasPrefix(filter, "$share/") && got != (filter == topic) {
			t.Fatalf("match(%q, %q) = %v for a filter without wildcards", filter, topic, got)
		}
		if filter == "#" && !strings.HasPrefix(topic, "$") && !got {
			t.Fatalf("# does not match %q", topic)
		}
	})
}

func TestWaitSubscribedWhileOffline(t *testing.T) {
	p := newPKI(t)
	c := newTestClient(t, p, "127.0.0.1:1", nil)
	if err := c.Subscribe("a/b", 1, func(string, []byte) {}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.WaitSubscribed(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSubscribed offline = %v, want the context's deadline", err)
	}
}
