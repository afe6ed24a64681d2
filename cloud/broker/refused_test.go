package broker

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotagent/iotagent/cloud/registry"
)

// TestRefusedConnectsAreBounded is issue 11 item 5: a REVOKED certificate
// sends CONNECTs with 60 KB client ids, each a new one, over real TLS.
// Nothing of a refused CONNECT may stay in memory (mochi's per-client-id
// metrics kept every id: 6,000 took iotsim from 14 MB to 615 MB) and the
// log may not grow with them (each id was logged whole: 361 MB).
func TestRefusedConnectsAreBounded(t *testing.T) {
	// 6,000 as the finding measured; the race detector makes each TLS
	// handshake some ten times slower, so under it (make test) 1,500,
	// and CI runs the 6,000 once without it.
	n := 6000
	switch {
	case testing.Short():
		n = 600
	case raceEnabled:
		n = 1500
	}
	logs := &logBuffer{}
	e := newEnvWith(t, func(o *Options) {
		o.Authorizer = allowAll{}
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	logs.records("connection refused") // count from here on
	revoked, _ := e.cert(registry.StatusRevoked)
	cfg := e.tlsConfig(&revoked)
	addr := e.b.Addrs()[0]
	const idBytes = 60 * 1024

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	start := time.Now()

	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				id := fmt.Sprintf("%06d", i) + strings.Repeat("x", idBytes-6)
				if err := refusedConnect(addr, cfg, id); err != nil {
					failed.Add(1)
					t.Errorf("CONNECT %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	elapsed := time.Since(start)
	e.waitNoConnections(t)
	growth := int64(heap()) - int64(before)

	st := e.b.Stats()
	if st.ConnectsRefused != int64(n) {
		t.Errorf("ConnectsRefused = %d, want %d", st.ConnectsRefused, n)
	}
	if got := e.b.clientIDs(); got != 0 {
		t.Errorf("state kept for %d client ids after refused CONNECTs only", got)
	}
	// The ids alone are n*60 KB (36 MB with -short, 360 MB without).
	const maxGrowth = 8 << 20
	if growth > maxGrowth {
		t.Errorf("heap grew by %d bytes after %d refused CONNECTs, want at most %d", growth, n, maxGrowth)
	}

	// At most logBurst refusals are logged a second, each cut to a bound;
	// the others are counted, and the counts add up.
	records, longest := logs.records("connection refused")
	seconds := int(elapsed/logWindow) + 1
	if records > logBurst*seconds || records == 0 {
		t.Errorf("%d refusals logged in %v, want 1..%d", records, elapsed, logBurst*seconds)
	}
	if longest > 1024 {
		t.Errorf("a refusal record is %d bytes, want at most 1024", longest)
	}
	if got := int64(records) + st.LogRecordsSuppressed; got != int64(n) {
		t.Errorf("%d records logged + %d suppressed = %d, want %d", records, st.LogRecordsSuppressed, got, n)
	}
	if logs.Len() > 64<<10*int64(seconds) {
		t.Errorf("log grew by %d bytes in %v", logs.Len(), elapsed)
	}
	t.Logf("%d refused CONNECTs in %v: heap %+d bytes, log %d bytes (%d records, %d suppressed)",
		n, elapsed.Round(time.Millisecond), growth, logs.Len(), records, st.LogRecordsSuppressed)
}

// refusedConnect sends an MQTT 3.1.1 CONNECT and expects the connection to
// be closed without a CONNACK.
func refusedConnect(addr string, cfg *tls.Config, clientID string) error {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitFor))
	pk := connectPacket(clientID, 4, 60)
	pk.ProtocolVersion = 4
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		return err
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		return err
	}
	b, err := io.ReadAll(conn)
	if len(b) > 0 {
		return fmt.Errorf("broker answered % x", b[:min(len(b), 8)])
	}
	if err != nil && !isReset(err) {
		return err
	}
	return nil
}

// waitNoConnections waits until the listeners hold no connection.
func (e *env) waitNoConnections(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		open := 0
		e.b.mu.Lock()
		for _, l := range e.b.listeners {
			l.mu.Lock()
			open += len(l.conns)
			l.mu.Unlock()
		}
		e.b.mu.Unlock()
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", open)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConnectThrottle: at most one accepted CONNECT per second per client
// id, as AWS; one sooner is refused as AWS refuses a CONNECT (MQTT 3.1.1:
// closed without CONNACK; MQTT 5: CONNACK 0x9F, connection rate exceeded).
// The client id's state goes an hour after its last connection.
func TestConnectThrottle(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	e := newEnvWith(t, func(o *Options) {
		o.Authorizer = allowAll{}
		o.Now = now
		o.ConnectInterval = 0 // AWS's
	})
	cert, _ := e.device("T")
	addr := e.b.Addrs()[0]
	connect := func(version byte, clientID string) (packets.Packet, error) {
		t.Helper()
		c, err := e.dialRaw(addr, &cert, version)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := c.connect(connectPacket(clientID, version, 60))
		if err == nil && ack.ReasonCode == 0 {
			c.conn.Close()
			e.waitOffline(t, clientID)
		}
		return ack, err
	}

	if ack, err := connect(4, "T"); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("first CONNECT: 0x%02x %v", ack.ReasonCode, err)
	}
	if ack, err := connect(4, "T"); err == nil {
		t.Errorf("MQTT 3.1.1 CONNECT within a second answered 0x%02x, want closed without CONNACK", ack.ReasonCode)
	}
	if ack, err := connect(5, "T"); err != nil || ack.ReasonCode != packets.ErrConnectionRateExceeded.Code {
		t.Errorf("MQTT 5 CONNECT within a second: 0x%02x %v, want CONNACK 0x9f", ack.ReasonCode, err)
	}
	if ack, err := connect(4, "other"); err != nil || ack.ReasonCode != 0 {
		t.Errorf("another client id: 0x%02x %v", ack.ReasonCode, err)
	}
	clock.Add(int64(time.Second))
	if ack, err := connect(5, "T"); err != nil || ack.ReasonCode != 0 {
		t.Errorf("CONNECT a second later: 0x%02x %v", ack.ReasonCode, err)
	}
	if st := e.b.Stats(); st.ConnectsThrottled != 2 || st.ConnectsRefused != 2 {
		t.Errorf("Stats = %+v, want 2 throttled and refused", st)
	}
	if got := e.b.ClientMetrics("T").ConnectionAttempts; got != 4 {
		t.Errorf("T's ConnectionAttempts = %d, want 4", got)
	}

	// Both client ids are gone an hour after their last connection.
	clock.Add(int64(clientRetention - time.Second))
	if got := len(e.b.AllClientMetrics()); got != 2 {
		t.Errorf("%d client ids before an hour, want 2", got)
	}
	clock.Add(int64(2 * time.Second))
	if got := e.b.AllClientMetrics(); len(got) != 0 || e.b.clientIDs() != 0 {
		t.Errorf("client ids kept an hour after their last connection: %v", got)
	}
}
