package broker

import (
	"sync"
	"sync/atomic"
)

// ClientMetrics are the per-client-id counters behind Device Defender's
// cloud-side metrics (shared/spec/defender.md §6.2), cumulative since the
// broker started.
type ClientMetrics struct {
	ConnectionAttempts    int64 // CONNECTs with this client id, accepted or not
	Disconnects           int64 // established connections that ended
	AuthorizationFailures int64 // refused CONNECTs and denied PUBLISHes and SUBSCRIBE filters
	MessagesSent          int64 // authorized PUBLISHes from the client
	BytesSent             int64 // their payload bytes
	MessagesReceived      int64 // PUBLISHes delivered to the client
	BytesReceived         int64 // their payload bytes
	LargestMessageSent    int64 // the largest payload the client published
	// SourceIP is the address the client last connected from.
	SourceIP string
}

type clientCounters struct {
	attempts, disconnects, authFailures atomic.Int64
	sent, sentBytes, recv, recvBytes    atomic.Int64
	largest                             atomic.Int64
	sourceIP                            atomic.Pointer[string]
}

// metrics holds the counters of every client id seen.
type metrics struct {
	m sync.Map // client id -> *clientCounters
}

func (m *metrics) get(clientID string) *clientCounters {
	if v, ok := m.m.Load(clientID); ok {
		return v.(*clientCounters)
	}
	v, _ := m.m.LoadOrStore(clientID, &clientCounters{})
	return v.(*clientCounters)
}

func (m *metrics) connectAttempt(clientID, remote string) {
	c := m.get(clientID)
	c.attempts.Add(1)
	ip := hostOnly(remote)
	c.sourceIP.Store(&ip)
}

func (m *metrics) authFailure(clientID string) { m.get(clientID).authFailures.Add(1) }
func (m *metrics) disconnect(clientID string)  { m.get(clientID).disconnects.Add(1) }

func (m *metrics) sent(clientID string, n int) {
	c := m.get(clientID)
	c.sent.Add(1)
	c.sentBytes.Add(int64(n))
	for {
		cur := c.largest.Load()
		if int64(n) <= cur || c.largest.CompareAndSwap(cur, int64(n)) {
			return
		}
	}
}

func (m *metrics) received(clientID string, n int) {
	c := m.get(clientID)
	c.recv.Add(1)
	c.recvBytes.Add(int64(n))
}

func (c *clientCounters) snapshot() ClientMetrics {
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

// ClientMetrics returns the counters of clientID (zero if never seen).
func (b *Broker) ClientMetrics(clientID string) ClientMetrics {
	if v, ok := b.metrics.m.Load(clientID); ok {
		return v.(*clientCounters).snapshot()
	}
	return ClientMetrics{}
}

// AllClientMetrics returns the counters of every client id seen.
func (b *Broker) AllClientMetrics() map[string]ClientMetrics {
	out := map[string]ClientMetrics{}
	b.metrics.m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*clientCounters).snapshot()
		return true
	})
	return out
}

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
