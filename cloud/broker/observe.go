package broker

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Observation of a client id, for `iotsim qualify`: what a device does at
// the protocol level that neither the lifecycle events nor the Device
// Defender counters show (its CONNECT attempts with their times, its keep-
// alive, the DUP flag of its PUBLISHes, what it was sent). Nothing is
// recorded for a client id until Watch is called for it; then the broker
// keeps short rings (MaxObservedConnects attempts, MaxObservedPackets
// publishes and deliveries) per watched client id, and at most MaxWatches
// client ids are watched at once, so what watching costs is bounded
// whatever the device does. With no watch, the broker's paths cost one
// atomic load more.

// Observation bounds.
const (
	// MaxWatches bounds the client ids watched at once.
	MaxWatches = 16
	// MaxObservedConnects bounds the CONNECT attempts kept per client id.
	MaxObservedConnects = 16
	// MaxObservedPackets bounds the PUBLISHes kept per client id, each
	// way.
	MaxObservedPackets = 32
)

var (
	// ErrTooManyWatches: MaxWatches client ids are watched already.
	ErrTooManyWatches = errors.New("too many client ids watched")
	// ErrNotWatched: the client id is not watched.
	ErrNotWatched = errors.New("client id not watched")
	// ErrBadClientID: Watch was given a client id no client can have.
	ErrBadClientID = errors.New("invalid client id")
)

// ConnectAttempt is one CONNECT the client sent.
type ConnectAttempt struct {
	Time     time.Time `json:"time"`
	Accepted bool      `json:"accepted"`
	// Refused says why a refused CONNECT was refused.
	Refused string `json:"refused,omitempty"`
}

// PacketSeen is a PUBLISH the client sent or was sent.
type PacketSeen struct {
	Time time.Time `json:"time"`
	// Connection is the number of the connection it went over (the
	// lifecycle events' versionNumber).
	Connection int64  `json:"connection"`
	Topic      string `json:"topic"`
	PacketID   uint16 `json:"packetId,omitempty"`
	QoS        byte   `json:"qos"`
	Dup        bool   `json:"dup,omitempty"`
	// PayloadHash is the FNV-1a 64 hash of the payload (hex): a resent
	// message has the same.
	PayloadHash string `json:"payloadHash"`
	// AckWithheld: a fault dropped the PUBACK of this PUBLISH.
	AckWithheld bool `json:"ackWithheld,omitempty"`
}

// ClientObservation is what the broker saw of a watched client id since
// Watch.
type ClientObservation struct {
	ClientID  string    `json:"clientId"`
	Since     time.Time `json:"since"`
	Connected bool      `json:"connected"`
	// Connects counts accepted CONNECTs; Connection is the number of the
	// last one (the lifecycle events' versionNumber).
	Connects   int64 `json:"connects"`
	Connection int64 `json:"connection"`
	// Of the last accepted CONNECT: protocol version (4 = 3.1.1, 5),
	// clean session (clean start) as the client asked, keep-alive in
	// seconds as the client asked, the CONNACK's session present, when.
	ProtocolVersion byte       `json:"protocolVersion,omitempty"`
	CleanSession    bool       `json:"cleanSession"`
	KeepAliveS      uint16     `json:"keepAliveS"`
	SessionPresent  bool       `json:"sessionPresent"`
	ConnectedAt     *time.Time `json:"connectedAt,omitempty"`
	DisconnectedAt  *time.Time `json:"disconnectedAt,omitempty"`
	// Of the last connection: PINGREQs read, the last one, the last
	// packet read, and the longest time without a packet from the client
	// (from the CONNECT on).
	PingReqs       int64      `json:"pingReqs"`
	LastPingReq    *time.Time `json:"lastPingReq,omitempty"`
	LastPacket     *time.Time `json:"lastPacket,omitempty"`
	MaxPacketGapMs int64      `json:"maxPacketGapMs"`
	// Subscriptions are the session's topic filters now (sorted); Queued
	// counts its messages in flight or waiting for the client.
	Subscriptions []string `json:"subscriptions"`
	Queued        int      `json:"queued"`
	// The latest CONNECT attempts, PUBLISHes from the client and
	// deliveries to it, oldest first; the totals count every one.
	ConnectAttempts      []ConnectAttempt `json:"connectAttempts"`
	ConnectAttemptsTotal int64            `json:"connectAttemptsTotal"`
	Publishes            []PacketSeen     `json:"publishes"`
	PublishesTotal       int64            `json:"publishesTotal"`
	Deliveries           []PacketSeen     `json:"deliveries"`
	DeliveriesTotal      int64            `json:"deliveriesTotal"`
}

// ring keeps the last n values.
type ring[T any] struct {
	v     []T
	head  int
	total int64
}

func (r *ring[T]) add(n int, x T) {
	r.total++
	if len(r.v) < n {
		r.v = append(r.v, x)
		return
	}
	r.v[r.head] = x
	r.head = (r.head + 1) % n
}

func (r *ring[T]) last() *T {
	if len(r.v) == 0 {
		return nil
	}
	return &r.v[(r.head+len(r.v)-1)%len(r.v)]
}

func (r *ring[T]) list() []T {
	out := make([]T, 0, len(r.v))
	out = append(out, r.v[r.head:]...)
	return append(out, r.v[:r.head]...)
}

// observer is a watched client id's record.
type observer struct {
	mu        sync.Mutex
	since     time.Time
	connected bool
	connects  int64
	conn      int64
	version   byte
	clean     bool
	keepAlive uint16
	present   bool
	upAt      time.Time
	downAt    time.Time
	pings     int64
	lastPing  time.Time
	lastRead  time.Time
	maxGap    time.Duration
	// the CONNECT being decided: what it asked for
	askVersion byte
	askClean   bool
	askKA      uint16
	attempts   ring[ConnectAttempt]
	pubs       ring[PacketSeen]
	dels       ring[PacketSeen]
}

// watches is the set of watched client ids, swapped on change.
type watches struct {
	set atomic.Pointer[map[string]*observer]
	mu  sync.Mutex
}

// observed returns the observer of clientID, nil when not watched: one
// atomic load while nothing is watched.
func (b *Broker) observed(clientID string) *observer {
	m := b.watches.set.Load()
	if m == nil {
		return nil
	}
	return (*m)[clientID]
}

// Watch starts recording what clientID does (idempotent: a second Watch
// keeps the record).
func (b *Broker) Watch(clientID string) error {
	if clientID == "" || len(clientID) > MaxClientIDBytes {
		return fmt.Errorf("watch %.32q: %w: want 1 to %d bytes", clientID, ErrBadClientID, MaxClientIDBytes)
	}
	w := &b.watches
	w.mu.Lock()
	defer w.mu.Unlock()
	next := map[string]*observer{}
	if old := w.set.Load(); old != nil {
		if _, ok := (*old)[clientID]; ok {
			return nil
		}
		maps.Copy(next, *old)
	}
	if len(next) >= MaxWatches {
		return fmt.Errorf("watch %q: %w (%d): unwatch one first", clientID, ErrTooManyWatches, MaxWatches)
	}
	o := &observer{since: b.now()}
	if cl, ok := b.srv.Clients.Get(clientID); ok && !cl.Closed() {
		o.connected = true
		if c := b.conn(cl); c != nil {
			o.conn = c.version
		}
		o.version = cl.Properties.ProtocolVersion
		o.clean = cl.Properties.Clean
		o.keepAlive = cl.State.Keepalive
		// Up since before the watch: counted from it.
		o.upAt, o.lastRead = o.since, o.since
	}
	next[clientID] = o
	w.set.Store(&next)
	b.log.Info("client watched", "client", clientID)
	return nil
}

// Unwatch stops recording clientID and forgets its record.
func (b *Broker) Unwatch(clientID string) error {
	w := &b.watches
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.set.Load()
	if old == nil || (*old)[clientID] == nil {
		return fmt.Errorf("unwatch %q: %w", clientID, ErrNotWatched)
	}
	next := maps.Clone(*old)
	delete(next, clientID)
	if len(next) == 0 {
		w.set.Store(nil)
	} else {
		w.set.Store(&next)
	}
	return nil
}

// Observe returns what the broker saw of a watched client id, with its
// session's subscriptions now.
func (b *Broker) Observe(clientID string) (ClientObservation, error) {
	o := b.observed(clientID)
	if o == nil {
		return ClientObservation{}, fmt.Errorf("observe %q: %w", clientID, ErrNotWatched)
	}
	out := ClientObservation{ClientID: clientID, Subscriptions: []string{}}
	if cl, ok := b.srv.Clients.Get(clientID); ok {
		out.Subscriptions = slices.Sorted(maps.Keys(cl.State.Subscriptions.GetAll()))
		out.Queued = cl.State.Inflight.Len()
	}
	t := func(v time.Time) *time.Time {
		if v.IsZero() {
			return nil
		}
		return &v
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	out.Since = o.since
	out.Connected = o.connected
	out.Connects, out.Connection = o.connects, o.conn
	out.ProtocolVersion, out.CleanSession, out.KeepAliveS, out.SessionPresent = o.version, o.clean, o.keepAlive, o.present
	out.ConnectedAt, out.DisconnectedAt = t(o.upAt), t(o.downAt)
	out.PingReqs, out.LastPingReq, out.LastPacket = o.pings, t(o.lastPing), t(o.lastRead)
	gap := o.maxGap
	if o.connected && !o.lastRead.IsZero() {
		gap = max(gap, b.now().Sub(o.lastRead)) // the silence so far counts
	}
	out.MaxPacketGapMs = gap.Milliseconds()
	out.ConnectAttempts, out.ConnectAttemptsTotal = o.attempts.list(), o.attempts.total
	out.Publishes, out.PublishesTotal = o.pubs.list(), o.pubs.total
	out.Deliveries, out.DeliveriesTotal = o.dels.list(), o.dels.total
	return out, nil
}

// connectRead records a CONNECT as it is read, before it is decided.
func (o *observer) connectRead(now time.Time, pk *packets.Packet) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.askVersion, o.askClean, o.askKA = pk.ProtocolVersion, pk.Connect.Clean, pk.Connect.Keepalive
	o.attempts.add(MaxObservedConnects, ConnectAttempt{Time: now, Refused: "undecided"})
}

// refused records the refusal of the CONNECT read last.
func (o *observer) refused(why string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if a := o.attempts.last(); a != nil && !a.Accepted {
		a.Refused = why
	}
}

// accepted records the acceptance of the CONNECT read last.
func (o *observer) accepted(now time.Time, conn int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if a := o.attempts.last(); a != nil {
		a.Accepted, a.Refused = true, ""
	}
	o.connected = true
	o.connects++
	o.conn = conn
	o.version, o.clean, o.keepAlive = o.askVersion, o.askClean, o.askKA
	o.present = false
	o.upAt, o.downAt = now, time.Time{}
	o.pings, o.lastPing, o.maxGap = 0, time.Time{}, 0
	o.lastRead = now
}

// read records a packet other than CONNECT read from the client.
func (o *observer) read(now time.Time, conn int64, pk *packets.Packet, ackWithheld bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if conn == o.conn && !o.lastRead.IsZero() {
		o.maxGap = max(o.maxGap, now.Sub(o.lastRead))
	}
	o.lastRead = now
	switch pk.FixedHeader.Type {
	case packets.Pingreq:
		o.pings++
		o.lastPing = now
	case packets.Publish:
		o.pubs.add(MaxObservedPackets, seen(now, conn, pk, ackWithheld))
	}
}

// wrote records a packet written to the client.
func (o *observer) wrote(now time.Time, conn int64, pk *packets.Packet) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch pk.FixedHeader.Type {
	case packets.Connack:
		o.present = pk.SessionPresent
	case packets.Publish:
		o.dels.add(MaxObservedPackets, seen(now, conn, pk, false))
	}
}

// disconnected records the end of connection conn.
func (o *observer) disconnected(now time.Time, conn int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if conn == o.conn {
		o.connected = false
		o.downAt = now
	}
}

func seen(now time.Time, conn int64, pk *packets.Packet, ackWithheld bool) PacketSeen {
	h := fnv.New64a()
	h.Write(pk.Payload)
	return PacketSeen{
		Time: now, Connection: conn, Topic: pk.TopicName, PacketID: pk.PacketID,
		QoS: pk.FixedHeader.Qos, Dup: pk.FixedHeader.Dup, PayloadHash: strconv.FormatUint(h.Sum64(), 16),
		AckWithheld: ackWithheld,
	}
}

// observeRead is OnPacketRead's part: o is the client's observer.
func (b *Broker) observeRead(o *observer, cl *mqtt.Client, pk *packets.Packet) {
	now := b.now()
	if pk.FixedHeader.Type == packets.Connect {
		o.connectRead(now, pk)
		return
	}
	c := b.conn(cl)
	if c == nil {
		return
	}
	withheld := false
	if fc, ok := cl.Net.Conn.(*faultConn); ok && pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0 {
		withheld = fc.dropMarked(packets.Puback, pk.PacketID)
	}
	o.read(now, c.version, pk, withheld)
}

// dropMarked reports whether the acknowledgement typ/id is marked to be
// dropped.
func (fc *faultConn) dropMarked(typ byte, id uint16) bool {
	if fc.marked.Load() == 0 {
		return false
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, m := range fc.marks {
		if m.typ == typ && m.id == id && m.drop {
			return true
		}
	}
	return false
}
