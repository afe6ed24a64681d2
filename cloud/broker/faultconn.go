package broker

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// faultConn is the net.Conn mochi writes to: it passes every write
// through unless a fault is active, and then drops, delays or doubles
// single packets in the stream. mochi writes whole packets (one or several
// per Write), so a Write starts on a packet boundary.
type faultConn struct {
	*tls.Conn
	b *Broker
	// client is the client id, set once the CONNECT is accepted.
	client atomic.Pointer[string]
	// expired: a FaultExpireSession discarded the client's old session
	// (OnPacketRead made the CONNECT a clean one).
	expired atomic.Bool

	// marked counts marks; mu guards marks: acknowledgements to drop or
	// delay, decided when the packet they answer was read.
	marked atomic.Int32
	mu     sync.Mutex
	marks  []ackMark
}

type ackMark struct {
	typ   byte   // packet type of the acknowledgement
	id    uint16 // its packet id (puback, suback, unsuback)
	delay time.Duration
	drop  bool
}

// tlsConn returns the TLS connection under nc.
func tlsConn(nc net.Conn) (*tls.Conn, bool) {
	switch c := nc.(type) {
	case *faultConn:
		return c.Conn, true
	case *tls.Conn:
		return c, true
	}
	return nil, false
}

func (fc *faultConn) clientID() string {
	if p := fc.client.Load(); p != nil {
		return *p
	}
	return ""
}

// Write is the hot path: with no fault active and nothing marked, it
// costs two atomic loads.
func (fc *faultConn) Write(p []byte) (int, error) {
	if fc.marked.Load() == 0 && fc.b.faults.set.Load() == nil {
		return fc.Conn.Write(p)
	}
	return fc.writeFaulty(p)
}

// mark records that the acknowledgement typ with packet id will be
// dropped or delayed.
func (fc *faultConn) mark(m ackMark) {
	fc.mu.Lock()
	fc.marks = append(fc.marks, m)
	fc.mu.Unlock()
	fc.marked.Add(1)
}

// takeMark removes and returns the mark for packet typ/id.
func (fc *faultConn) takeMark(typ byte, id uint16) (ackMark, bool) {
	if fc.marked.Load() == 0 {
		return ackMark{}, false
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for i, m := range fc.marks {
		if m.typ == typ && m.id == id {
			fc.marks = append(fc.marks[:i], fc.marks[i+1:]...)
			fc.marked.Add(-1)
			return m, true
		}
	}
	return ackMark{}, false
}

// splitPacket returns the length of the packet at the start of p and the
// length of its fixed header; ok is false if p does not start with a
// whole packet.
func splitPacket(p []byte) (n, hdr int, ok bool) {
	if len(p) < 2 {
		return 0, 0, false
	}
	var rem, mul int = 0, 1
	i := 1
	for ; ; i++ {
		if i >= len(p) || i > 4 {
			return 0, 0, false
		}
		rem += int(p[i]&0x7f) * mul
		mul *= 128
		if p[i]&0x80 == 0 {
			break
		}
	}
	hdr = i + 1
	if hdr+rem > len(p) {
		return 0, 0, false
	}
	return hdr + rem, hdr, true
}

func (fc *faultConn) writeFaulty(p []byte) (int, error) {
	set := fc.b.faults.set.Load()
	client := fc.clientID()
	if fc.marked.Load() == 0 && !set.aimsWrites(client) {
		return fc.Conn.Write(p)
	}
	out := make([]byte, 0, len(p))
	rest := p
	for len(rest) > 0 {
		n, hdr, ok := splitPacket(rest)
		if !ok {
			out = append(out, rest...)
			break
		}
		pk := rest[:n]
		rest = rest[n:]
		typ := pk[0] >> 4
		var m ackMark
		var found bool
		switch typ {
		case packets.Puback, packets.Suback, packets.Unsuback:
			if n >= hdr+2 {
				m, found = fc.takeMark(typ, uint16(pk[hdr])<<8|uint16(pk[hdr+1]))
			}
		case packets.Connack, packets.Pingresp:
			m, found = fc.takeMark(typ, 0)
		case packets.Publish:
			m, found = fc.publishFault(set, client, pk, hdr)
			if !found && set != nil && set.has(FaultDuplicate) {
				if topic, ok := publishTopic(pk, hdr); ok &&
					fc.b.pick(set, FaultDuplicate, "", client, topic, false, nil, "delivered twice") != nil {
					out = append(out, pk...)
					if q := pk[0] >> 1 & 3; q > 0 {
						dup := append([]byte(nil), pk...)
						dup[0] |= 0x08
						pk = dup
					}
				}
			}
		}
		switch {
		case !found:
			out = append(out, pk...)
		case m.drop:
		case typ == packets.Connack:
			// Nothing may precede a CONNACK: hold the rest back.
			if len(out) > 0 {
				if _, err := fc.Conn.Write(out); err != nil {
					return 0, err
				}
				out = out[:0]
			}
			time.Sleep(m.delay)
			out = append(out, pk...)
		default:
			late := append([]byte(nil), pk...)
			time.AfterFunc(m.delay, func() { _, _ = fc.Conn.Write(late) })
		}
	}
	if len(out) > 0 {
		if _, err := fc.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// aimsWrites reports whether a fault acting on the deliveries written to
// client (drop or delay of publish, duplicate) aims at it.
func (s *faultSet) aimsWrites(client string) bool {
	if s == nil {
		return false
	}
	for _, a := range s.list {
		if (a.Kind == FaultDuplicate || a.Packet == "publish") && (a.Client == "" || globMatch(a.Client, client)) {
			return true
		}
	}
	return false
}

// publishFault decides drop or delay of a delivery.
func (fc *faultConn) publishFault(set *faultSet, client string, pk []byte, hdr int) (ackMark, bool) {
	if !set.has(FaultDrop) && !set.has(FaultDelay) {
		return ackMark{}, false
	}
	topic, ok := publishTopic(pk, hdr)
	if !ok {
		return ackMark{}, false
	}
	if fc.b.pick(set, FaultDrop, "publish", client, topic, false, nil, "delivery dropped") != nil {
		return ackMark{drop: true}, true
	}
	if a := fc.b.pick(set, FaultDelay, "publish", client, topic, false, nil, "delivery delayed"); a != nil {
		return ackMark{delay: time.Duration(a.Delay)}, true
	}
	return ackMark{}, false
}

// publishTopic reads the topic name of an encoded PUBLISH ("" with a
// topic alias).
func publishTopic(pk []byte, hdr int) (string, bool) {
	if len(pk) < hdr+2 {
		return "", false
	}
	l := int(pk[hdr])<<8 | int(pk[hdr+1])
	if len(pk) < hdr+2+l {
		return "", false
	}
	return string(pk[hdr+2 : hdr+2+l]), true
}

// ackFault decides, when a packet is read, whether its acknowledgement
// (kind drop or delay of packet) is dropped or delayed, and marks it.
func (b *Broker) ackFault(set *faultSet, fc *faultConn, typ byte, packet string, id uint16, client string, topics []string, asFilter bool) {
	if !set.has(FaultDrop) && !set.has(FaultDelay) {
		return
	}
	if len(topics) == 0 {
		topics = []string{""}
	}
	for _, t := range topics {
		if b.pick(set, FaultDrop, packet, client, t, asFilter, nil, packet+" dropped") != nil {
			fc.mark(ackMark{typ: typ, id: id, drop: true})
			return
		}
		if a := b.pick(set, FaultDelay, packet, client, t, asFilter, nil, packet+" delayed"); a != nil {
			fc.mark(ackMark{typ: typ, id: id, delay: time.Duration(a.Delay)})
			return
		}
	}
}

// faultsOnRead applies the faults decided when a client packet is read; a
// non-nil error closes the connection.
func (h *hook) faultsOnRead(set *faultSet, cl *mqtt.Client, c *conn, pk *packets.Packet) error {
	b := h.b
	fc, _ := cl.Net.Conn.(*faultConn)
	if fc == nil || c == nil {
		return nil
	}
	client := c.p.ClientID
	if set.has(FaultCloseAfter) {
		n := c.faultReads.Add(1)
		if b.pick(set, FaultCloseAfter, "", client, "", false, func(a *activeFault) bool { return n >= a.Packets }, "closed after "+itoa(n)+" packets") != nil {
			return h.reject(cl, c, ReasonServerInitiatedDisconnect, packets.ErrAdministrativeAction, "fault: close after packets")
		}
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if b.pick(set, FaultCloseOnPublish, "", client, pk.TopicName, false, nil, "closed on publish") != nil {
			return h.reject(cl, c, ReasonServerInitiatedDisconnect, packets.ErrAdministrativeAction, "fault: close on publish to "+pk.TopicName)
		}
		if pk.FixedHeader.Qos > 0 {
			b.ackFault(set, fc, packets.Puback, "puback", pk.PacketID, client, []string{pk.TopicName}, false)
		}
	case packets.Subscribe, packets.Unsubscribe:
		filters := make([]string, len(pk.Filters))
		for i, f := range pk.Filters {
			filters[i] = f.Filter
		}
		if pk.FixedHeader.Type == packets.Subscribe {
			b.ackFault(set, fc, packets.Suback, "suback", pk.PacketID, client, filters, true)
		} else {
			b.ackFault(set, fc, packets.Unsuback, "unsuback", pk.PacketID, client, filters, true)
		}
	case packets.Pingreq:
		b.ackFault(set, fc, packets.Pingresp, "pingresp", 0, client, nil, false)
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// connectFaults runs in OnConnect once the client id is known: it may
// refuse the CONNECT (a non-nil code, hangUp for no CONNACK) and marks
// the CONNACK to drop or delay.
func (b *Broker) connectFault(set *faultSet, clientID string) (refuse bool, code packets.Code, always bool, why string) {
	if a := b.pick(set, FaultRefuseConnect, "", clientID, "", false, nil, "connect refused"); a != nil {
		if a.Code == 0 {
			return true, packets.ErrNotAuthorized, false, "fault " + a.ID + ": connect refused (hang up)"
		}
		return true, packets.Code{Code: byte(a.Code), Reason: "injected fault"}, true, "fault " + a.ID + ": connect refused with code " + itoa(int64(a.Code))
	}
	if a := b.pick(set, FaultThrottleConnect, "", clientID, "", false, nil, "connect throttled"); a != nil {
		b.stats.throttled.Add(1)
		return true, packets.ErrConnectionRateExceeded, false, "fault " + a.ID + ": connect rate exceeded"
	}
	return false, packets.Code{}, false, ""
}

// connackCode maps a CONNACK code given for either protocol version to
// the client's (mochi maps MQTT 5 codes for 3.1.1 clients itself).
func connackCode(code packets.Code, v5 bool) packets.Code {
	v3to5 := map[byte]packets.Code{1: packets.ErrUnsupportedProtocolVersion, 2: packets.ErrClientIdentifierNotValid,
		3: packets.ErrServerUnavailable, 4: packets.ErrBadUsernameOrPassword, 5: packets.ErrNotAuthorized}
	if c, ok := v3to5[code.Code]; ok && v5 {
		return c
	}
	return code
}

// throttled answers a shadow or Jobs request with the service's throttling
// error instead of serving it, if a throttle fault aims at it.
func (b *Broker) throttled(set *faultSet, c *conn, topic string, payload []byte) bool {
	svc := requestService(topic)
	if svc == "" {
		return false
	}
	kind := FaultThrottleShadow
	if svc == "jobs" {
		kind = FaultThrottleJobs
	}
	if b.pick(set, kind, "", c.p.ClientID, topic, false, nil, "request throttled") == nil {
		return false
	}
	var req struct {
		ClientToken *string `json:"clientToken"`
	}
	_ = json.Unmarshal(payload, &req)
	now := b.now().Unix()
	if svc == "jobs" {
		body, _ := json.Marshal(struct {
			Code        string  `json:"code"`
			Message     string  `json:"message"`
			ClientToken *string `json:"clientToken,omitempty"`
			Timestamp   int64   `json:"timestamp"`
		}{"RequestThrottled", "Rate exceeded", req.ClientToken, now})
		if err := b.PublishTo(c.p.ClientID, topic+"/rejected", body, 1); err != nil {
			b.log.Debug("throttle reply", "client", c.p.ClientID, "err", err)
		}
		return true
	}
	body, _ := json.Marshal(struct {
		Code        int     `json:"code"`
		Message     string  `json:"message"`
		ClientToken *string `json:"clientToken,omitempty"`
		Timestamp   int64   `json:"timestamp"`
	}{429, "Too Many Requests", req.ClientToken, now})
	if err := b.Publish(topic+"/rejected", body, 1); err != nil {
		b.log.Debug("throttle reply", "client", c.p.ClientID, "err", err)
	}
	return true
}

// requestService says whether topic is a shadow ("shadow") or Jobs
// ("jobs") request topic, as the services serve them.
func requestService(topic string) string {
	s := strings.Split(topic, "/")
	if len(s) < 5 || s[0] != "$aws" || s[1] != "things" {
		return ""
	}
	switch s[3] {
	case "shadow":
		op := s[len(s)-1]
		if (len(s) == 5 || len(s) == 7 && s[4] == "name") && (op == "get" || op == "update" || op == "delete") {
			return "shadow"
		}
	case "jobs":
		if len(s) == 5 && (s[4] == "get" || s[4] == "start-next") || len(s) == 6 && (s[5] == "get" || s[5] == "update") {
			return "jobs"
		}
	}
	return ""
}

// maxConnectTime is MQTT 5's "maximum connect time" DISCONNECT code.
var maxConnectTime = packets.Code{Code: 0xA0, Reason: "maximum connect time"}

// scheduleDisconnects arms fault a (kind disconnect) on every
// established connection it aims at.
func (b *Broker) scheduleDisconnects(a *activeFault) {
	b.conns.Range(func(k, v any) bool {
		cl, c := k.(*mqtt.Client), v.(*conn)
		if c.established.Load() && !cl.Closed() && a.aims(c.p.ClientID, "", false) {
			b.armDisconnect(a, cl, c)
		}
		return true
	})
}

// armDisconnect closes cl when it is a.After old, if a still holds then.
func (b *Broker) armDisconnect(a *activeFault, cl *mqtt.Client, c *conn) {
	fire := func() {
		set := b.faults.set.Load()
		if set == nil || cl.Closed() || !c.established.Load() {
			return
		}
		still := func(x *activeFault) bool { return x == a }
		if b.pick(set, FaultDisconnect, "", c.p.ClientID, "", false, still, "disconnected at age "+time.Duration(a.After).String()) == nil {
			return
		}
		c.setReason(ReasonServerInitiatedDisconnect)
		b.kick(cl, maxConnectTime)
	}
	wait := time.Duration(a.After) - b.now().Sub(c.since)
	if wait <= 0 {
		go fire()
		return
	}
	time.AfterFunc(wait, fire)
}

// expireSession discards the offline persistent session a CONNECT would
// resume, if a FaultExpireSession aims at it: the CONNECT is made a clean
// one (mochi then drops the old session and answers session present 0),
// and OnSessionEstablished makes the new session persistent again.
func (h *hook) expireSession(set *faultSet, cl *mqtt.Client, pk *packets.Packet) {
	if !set.has(FaultExpireSession) || pk.Connect.Clean {
		return
	}
	id := pk.Connect.ClientIdentifier
	existing, ok := h.b.srv.Clients.Get(id)
	if !ok || !existing.Closed() {
		return
	}
	fc, _ := cl.Net.Conn.(*faultConn)
	if fc == nil || h.b.pick(set, FaultExpireSession, "", id, "", false, nil, "persistent session expired") == nil {
		return
	}
	fc.expired.Store(true)
	pk.Connect.Clean = true
}
