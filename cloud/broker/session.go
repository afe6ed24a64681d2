package broker

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// maxWithheldPerClient bounds the messages kept aside for one client id;
// past it the oldest are dropped (and counted).
const maxWithheldPerClient = 1000

// withheld keeps, per client id, the QoS 1 messages of a persistent session
// that a connection taking the session over may not receive (iot:Receive
// is evaluated for the connection that receives): they wait for a
// connection with that client id that may, or for the session's end.
type withheld struct {
	mu      sync.Mutex
	m       map[string][]packets.Packet
	total   atomic.Int64 // messages ever withheld
	dropped atomic.Int64 // withheld messages dropped (bound, expiry, clean start)
}

// Withheld reports how many queued messages were kept from connections
// that took over a persistent session and may not receive them, and how
// many of those were dropped in the end.
func (b *Broker) Withheld() (total, dropped int64) {
	return b.held.total.Load(), b.held.dropped.Load()
}

// refilterSession runs before mochi hands the session of cl.ID (its
// subscriptions and queued messages, which mochi resends at once) to the
// new connection cl: messages cl's principal may not receive are moved
// aside, messages set aside earlier that it may receive are put back.
func (b *Broker) refilterSession(cl *mqtt.Client, pk packets.Packet) {
	c := b.conn(cl)
	if c == nil {
		return
	}
	h := &b.held
	h.mu.Lock()
	defer h.mu.Unlock()
	if pk.Connect.Clean {
		// A clean start discards the session, and what was kept of it.
		b.dropWithheldLocked(cl.ID, "clean start")
		return
	}
	existing, ok := b.srv.Clients.Get(cl.ID)
	if !ok || existing == cl {
		b.dropWithheldLocked(cl.ID, "no session to resume")
		return
	}
	var keep []packets.Packet
	for _, m := range h.m[cl.ID] {
		if !b.authz.Receive(c.p, m.TopicName) {
			keep = append(keep, m)
			continue
		}
		id, err := existing.NextPacketID()
		if err != nil {
			keep = append(keep, m)
			continue
		}
		m.PacketID = uint16(id)
		if existing.State.Inflight.Set(m) {
			atomic.AddInt64(&b.srv.Info.Inflight, 1)
		}
	}
	moved := 0
	for _, m := range existing.State.Inflight.GetAll(false) {
		if m.FixedHeader.Type != packets.Publish || b.authz.Receive(c.p, m.TopicName) {
			continue
		}
		if existing.State.Inflight.Delete(m.PacketID) {
			atomic.AddInt64(&b.srv.Info.Inflight, -1)
			keep = append(keep, m)
			moved++
		}
	}
	if moved > 0 {
		h.total.Add(int64(moved))
		b.log.Info("persistent session: queued messages withheld from a connection not allowed to receive them",
			"client", cl.ID, "certificate_id", c.p.CertificateID, "withheld", moved)
	}
	if n := len(keep) - maxWithheldPerClient; n > 0 {
		h.dropped.Add(int64(n))
		b.log.Warn("persistent session: withheld messages dropped past the bound", "client", cl.ID, "dropped", n)
		keep = keep[n:]
	}
	if len(keep) == 0 {
		delete(h.m, cl.ID)
		return
	}
	if h.m == nil {
		h.m = map[string][]packets.Packet{}
	}
	h.m[cl.ID] = keep
}

// dropWithheld forgets what was kept for a client id whose session ended.
func (b *Broker) dropWithheld(clientID, why string) {
	b.held.mu.Lock()
	defer b.held.mu.Unlock()
	b.dropWithheldLocked(clientID, why)
}

func (b *Broker) dropWithheldLocked(clientID, why string) {
	n := len(b.held.m[clientID])
	if n == 0 {
		return
	}
	delete(b.held.m, clientID)
	b.held.dropped.Add(int64(n))
	b.log.Info("persistent session: withheld messages dropped", "client", clientID, "dropped", n, "reason", why)
}
