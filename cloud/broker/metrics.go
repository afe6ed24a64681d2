package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// ClientMetrics are the per-client-id counters behind Device Defender's
// cloud-side metrics (shared/spec/defender.md §6.2), cumulative from the
// client id's first accepted CONNECT; they are dropped an hour after its
// last connection ended (and start again from zero).
type ClientMetrics struct {
	ConnectionAttempts    int64 // CONNECTs with this client id, accepted or not (refused ones while it has state)
	Disconnects           int64 // established connections that ended
	AuthorizationFailures int64 // refused CONNECTs (as above) and denied PUBLISHes and SUBSCRIBE filters
	MessagesSent          int64 // authorized PUBLISHes from the client
	BytesSent             int64 // their payload bytes
	MessagesReceived      int64 // PUBLISHes delivered to the client
	BytesReceived         int64 // their payload bytes
	LargestMessageSent    int64 // the largest payload the client published
	// SourceIP is the address the client last connected from.
	SourceIP string
}

// clientState is what the broker keeps per client id: the Device Defender
// counters, the lifecycle events' versionNumber and the time of the last
// accepted CONNECT (AWS's one CONNECT per second per client id). It is
// created by the first accepted CONNECT, never by a refused one, held by
// each connection of the client id and freed clientRetention after the
// last one ended, so what a client id costs is bounded by the clients that
// connected in the last hour, whatever is refused.
type clientState struct {
	attempts, disconnects, authFailures atomic.Int64
	sent, sentBytes, recv, recvBytes    atomic.Int64
	largest                             atomic.Int64
	sourceIP                            atomic.Pointer[string]

	version     atomic.Int64 // versionNumber of the last accepted CONNECT
	lastConnect atomic.Int64 // unix ns of the last accepted CONNECT
	refs        atomic.Int32 // connections holding the state
	idleSince   atomic.Int64 // unix ns when refs last fell to 0
}

// clientRetention is how long a client id's state outlives its last
// connection: AWS's lifecycle versionNumber restarts after about an hour
// without a connection (shared/spec/mqtt-limits.md §7.1), and an hour is
// the longest window Device Defender's cloud-side metrics are read over.
const clientRetention = time.Hour

// minConnectInterval is AWS's limit of one CONNECT per second per client id.
const minConnectInterval = time.Second

// minSweep is the table size from which adding a client id sweeps it.
const minSweep = 1024

// metrics holds the state of every client id connected in the last
// clientRetention. Reads are lock-free; mu orders creating, holding and
// freeing a state, so a state is never freed while a connection takes it.
type metrics struct {
	m       sync.Map // client id -> *clientState
	mu      sync.Mutex
	n       atomic.Int64 // entries in m
	sweepAt int64        // guarded by mu
}

// lookup returns clientID's state if it has one; it never creates one.
func (m *metrics) lookup(clientID string) *clientState {
	if len(clientID) > MaxClientIDBytes {
		return nil // never accepted
	}
	if v, ok := m.m.Load(clientID); ok {
		return v.(*clientState)
	}
	return nil
}

// acquire takes a hold on clientID's state for an accepted CONNECT at now,
// creating the state if needed, unless the client id was last accepted
// less than interval before (interval <= 0: no limit): then it returns the
// state and throttled, and takes no hold.
func (m *metrics) acquire(clientID string, now time.Time, interval time.Duration) (st *clientState, throttled bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.m.Load(clientID); ok {
		st = v.(*clientState)
	} else {
		st = &clientState{}
		m.m.Store(clientID, st)
		if n := m.n.Add(1); n >= max(m.sweepAt, minSweep) {
			// Sweep when the table has doubled since the last sweep:
			// O(1) per client id.
			m.sweepLocked(now)
			m.sweepAt = 2 * m.n.Load()
		}
	}
	last := st.lastConnect.Load()
	if interval > 0 && last != 0 && now.UnixNano()-last < int64(interval) {
		return st, true
	}
	st.lastConnect.Store(now.UnixNano())
	st.refs.Add(1)
	st.attempts.Add(1)
	return st, false
}

// release drops a hold taken by acquire.
func (m *metrics) release(st *clientState, now time.Time) {
	if st.refs.Add(-1) == 0 {
		st.idleSince.Store(now.UnixNano())
	}
}

// sweep frees the state of client ids without a connection for longer
// than clientRetention.
func (m *metrics) sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(now)
}

func (m *metrics) sweepLocked(now time.Time) {
	cut := now.Add(-clientRetention).UnixNano()
	m.m.Range(func(k, v any) bool {
		st := v.(*clientState)
		if st.refs.Load() == 0 && st.idleSince.Load() < cut {
			m.m.Delete(k)
			m.n.Add(-1)
		}
		return true
	})
}

func (st *clientState) sentMessage(n int) {
	st.sent.Add(1)
	st.sentBytes.Add(int64(n))
	for {
		cur := st.largest.Load()
		if int64(n) <= cur || st.largest.CompareAndSwap(cur, int64(n)) {
			return
		}
	}
}

func (st *clientState) receivedMessage(n int) {
	st.recv.Add(1)
	st.recvBytes.Add(int64(n))
}

func (c *clientState) snapshot() ClientMetrics {
	out := ClientMetrics{
		ConnectionAttempts:    c.attempts.Load(),
		Disconnects:           c.disconnects.Load(),
		AuthorizationFailures: c.authFailures.Load(),
		MessagesSent:          c.sent.Load(),
		BytesSent:             c.sentBytes.Load(),
		MessagesReceived:      c.recv.Load(),
		BytesReceived:         c.recvBytes.Load(),
		LargestMessageSent:    c.largest.Load(),
	}
	if ip := c.sourceIP.Load(); ip != nil {
		out.SourceIP = *ip
	}
	return out
}

// ClientMetrics returns the counters of clientID (zero if it has not
// connected in the last hour).
func (b *Broker) ClientMetrics(clientID string) ClientMetrics {
	if st := b.metrics.lookup(clientID); st != nil {
		return st.snapshot()
	}
	return ClientMetrics{}
}

// AllClientMetrics returns the counters of every client id connected in
// the last hour (and frees those of client ids gone for longer).
func (b *Broker) AllClientMetrics() map[string]ClientMetrics {
	b.metrics.sweep(b.now())
	out := map[string]ClientMetrics{}
	b.metrics.m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*clientState).snapshot()
		return true
	})
	return out
}

// clientIDs returns how many client ids the broker holds state for.
func (b *Broker) clientIDs() int64 { return b.metrics.n.Load() }

// Stats are broker-wide counters of what the broker refused or could not
// do, cumulative since it started.
type Stats struct {
	// AcceptErrors counts failed accepts on the MQTT listeners (e.g. the
	// process out of file descriptors); each is retried after a pause.
	AcceptErrors int64
	// ConnectsRefused counts CONNECTs refused for any reason, throttled
	// ones included.
	ConnectsRefused int64
	// ConnectsThrottled counts CONNECTs refused because the client id
	// had connected less than a second before (AWS's limit).
	ConnectsThrottled int64
	// ReasonCodesReplaced counts acknowledgement reason codes undefined
	// for the client's protocol version that were sent as 0x80 instead.
	ReasonCodesReplaced int64
	// LogRecordsSuppressed counts log records of refusals and accept
	// errors left out by the rate limit (each kind writes at most 10 a
	// second; the next record written says how many it left out).
	LogRecordsSuppressed int64
}

type counters struct {
	acceptErrors, refused, throttled, invalidCodes, suppressed atomic.Int64
}

// Stats returns the broker-wide counters.
func (b *Broker) Stats() Stats {
	return Stats{
		AcceptErrors:         b.stats.acceptErrors.Load(),
		ConnectsRefused:      b.stats.refused.Load(),
		ConnectsThrottled:    b.stats.throttled.Load(),
		ReasonCodesReplaced:  b.stats.invalidCodes.Load(),
		LogRecordsSuppressed: b.stats.suppressed.Load(),
	}
}
