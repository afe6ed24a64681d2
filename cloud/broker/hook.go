package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
)

// errRefused is returned from OnConnect: mochi then closes the connection
// without a CONNACK (unless one was written first for MQTT 5).
var errRefused = errors.New("broker: connection refused")

// hook plugs AWS IoT's rules into mochi.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "iotsim-aws" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect,
		mqtt.OnConnectAuthenticate,
		mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
		mqtt.OnPacketRead,
		mqtt.OnACLCheck,
		mqtt.OnSubscribed,
		mqtt.OnUnsubscribed,
		mqtt.OnPublish,
		mqtt.OnClientExpired,
		mqtt.OnPacketEncode,
		mqtt.OnQosComplete,
	}, []byte{b})
}

// OnConnectAuthenticate: authentication happened in OnConnect.
func (h *hook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnConnect authenticates the certificate, applies the client-id rules and
// asks the Authorizer. Refusals return an error, so mochi closes the
// connection without a CONNACK; MQTT 5 clients get a CONNACK code first.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	v5 := pk.ProtocolVersion == 5
	// Nothing is recorded per client id before the CONNECT is accepted:
	// a refusal counts against a client id only if it already has state.
	refuse := func(code packets.Code, always bool, why string) error {
		b.stats.refused.Add(1)
		if o := b.observed(pk.Connect.ClientIdentifier); o != nil {
			o.refused(why)
		}
		if st := b.metrics.lookup(pk.Connect.ClientIdentifier); st != nil {
			st.attempts.Add(1)
			if code == packets.ErrNotAuthorized {
				st.authFailures.Add(1)
			}
		}
		if v5 || always {
			_ = b.srv.SendConnack(cl, code, false, nil)
		}
		if ok, suppressed := b.refusalLog.allow(b.now()); ok {
			b.log.Info("connection refused", "client", pk.Connect.ClientIdentifier, "remote", cl.Net.Remote, "reason", why,
				"suppressed", suppressed)
		} else {
			b.stats.suppressed.Add(1)
		}
		return fmt.Errorf("%w: %s", errRefused, logField(why))
	}

	tc, ok := tlsConn(cl.Net.Conn)
	if !ok {
		return refuse(packets.ErrNotAuthorized, false, "not a TLS connection")
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return refuse(packets.ErrNotAuthorized, false, "no client certificate")
	}
	cert := cs.PeerCertificates[0]
	certID := pki.CertificateID(cert.Raw)
	rc, err := b.o.Registry.DescribeCertificate(certID)
	if b.o.AutoRegister != nil && (errors.Is(err, registry.ErrNotFound) || err == nil && rc.Status == registry.StatusPendingActivation) {
		// JITR/JITP: the connection is refused all the same; the next may succeed.
		b.o.AutoRegister(cert)
	}
	if err != nil {
		return refuse(packets.ErrNotAuthorized, false, "certificate "+certID+" not registered")
	}
	if rc.Status != registry.StatusActive {
		return refuse(packets.ErrNotAuthorized, false, "certificate "+certID+" is "+rc.Status)
	}

	clientID := pk.Connect.ClientIdentifier
	switch {
	case clientID == "":
		// CONNACK 2 (identifier rejected) for 3.1.1, 0x85 for 5.
		return refuse(packets.ErrClientIdentifierNotValid, true, "empty client id")
	case len(clientID) > MaxClientIDBytes || strings.HasPrefix(clientID, "$"):
		return refuse(packets.ErrClientIdentifierNotValid, false, "client id not allowed")
	}

	set := b.faults.set.Load()
	if set != nil {
		if no, code, always, why := b.connectFault(set, clientID); no {
			return refuse(connackCode(code, v5), always, why)
		}
	}

	things := rc.Things // the certificate's things, as read above
	p := &Principal{
		ClientID:      clientID,
		CertificateID: certID,
		RemoteAddr:    cl.Net.Remote,
		Certificate:   cert,
		ServerName:    cs.ServerName,
	}
	if slices.Contains(things, clientID) {
		p.ThingName = clientID
	}
	if err := b.authz.Connect(p); err != nil {
		return refuse(packets.ErrNotAuthorized, false, err.Error())
	}
	if pk.Connect.WillFlag {
		if err := CheckTopicName(pk.Connect.WillTopic); err != nil || pk.Connect.WillQos > 1 ||
			(pk.Connect.WillRetain && strings.HasPrefix(pk.Connect.WillTopic, "$")) ||
			!b.authz.Publish(p, pk.Connect.WillTopic, pk.Connect.WillRetain) {
			return refuse(packets.ErrNotAuthorized, false, "last will not allowed")
		}
	}

	// Accepted, unless the client id was accepted less than a second ago.
	st, throttled := b.metrics.acquire(clientID, b.now(), b.connectInterval)
	if throttled {
		b.stats.throttled.Add(1)
		return refuse(packets.ErrConnectionRateExceeded, false, "more than one CONNECT per second for this client id")
	}
	ip := hostOnly(cl.Net.Remote)
	st.sourceIP.Store(&ip)

	if ka := clampKeepAlive(pk.Connect.Keepalive); ka != pk.Connect.Keepalive {
		cl.State.Keepalive = ka
		cl.State.ServerKeepalive = true
	}
	c := &conn{p: p, v5: v5, session: newSessionID(), st: st, version: st.version.Add(1)}
	if fc, ok := cl.Net.Conn.(*faultConn); ok {
		fc.client.Store(&clientID)
		if set != nil {
			b.ackFault(set, fc, packets.Connack, "connack", 0, clientID, nil, false)
		}
	}
	b.conns.Store(cl, c)
	b.pending.Store(cl.Net.Conn, cl)
	if o := b.observed(clientID); o != nil {
		o.accepted(b.now(), c.version)
	}
	return nil
}

// OnSessionEstablish runs before mochi takes over an existing session with
// the same client id: queued messages the new connection may not receive
// are set aside (session.go), the old state is marked so OnDisconnect drops
// it, and an MQTT 3.1.1 connection still open is closed.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.b.refilterSession(cl, pk)
	existing, ok := h.b.srv.Clients.Get(cl.ID)
	if !ok || existing == cl {
		return
	}
	if c := h.b.conn(existing); c != nil {
		h.b.unpark(existing, c) // the new connection inherits every delivery
		c.takenOver.Store(true)
		c.setReason(ReasonDuplicateClientID)
		if existing.Closed() { // an offline persistent session
			h.b.conns.Delete(existing)
		}
	}
	// mochi would write a DISCONNECT to the old connection, which MQTT
	// 3.1.1 does not have: close it first (kick), as AWS does.
	if !existing.Closed() && existing.Properties.ProtocolVersion < 5 {
		h.b.kick(existing, packets.ErrSessionTakenOver)
	}
}

// OnSessionEstablished runs after CONNACK: emit the connected event.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.b.pending.Delete(cl.Net.Conn)
	c := h.b.conn(cl)
	if c == nil {
		return
	}
	c.since = h.b.now()
	if fc, ok := cl.Net.Conn.(*faultConn); ok && fc.expired.Load() {
		cl.Properties.Clean = false // the new session is persistent all the same
		h.b.dropWithheld(cl.ID, "session expired (fault)")
	}
	c.established.Store(true)
	h.b.emitPresence(c, true, "")
	if set := h.b.faults.set.Load(); set.has(FaultDisconnect) {
		for _, a := range set.list {
			if a.Kind == FaultDisconnect && a.aims(c.p.ClientID, "", false) {
				h.b.armDisconnect(a, cl, c)
			}
		}
	}
}

// OnDisconnect emits the disconnected event with AWS's reason.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	c := h.b.conn(cl)
	if c == nil {
		return
	}
	if o := h.b.observed(c.p.ClientID); o != nil {
		o.disconnected(h.b.now(), c.version)
	}
	h.b.unpark(cl, c)
	if c.established.Swap(false) {
		c.st.disconnects.Add(1)
		h.b.emitPresence(c, false, disconnectReason(c, cl, err))
	}
	h.b.releaseClient(c)
	if expire || c.takenOver.Load() || cl.IsTakenOver() {
		h.b.conns.Delete(cl)
	}
}

// OnClientExpired drops the state of an expired persistent session.
func (h *hook) OnClientExpired(cl *mqtt.Client) {
	h.b.conns.Delete(cl)
	h.b.dropWithheld(cl.ID, "session expired")
}

func disconnectReason(c *conn, cl *mqtt.Client, err error) string {
	if r := c.reason.Load(); r != nil {
		return *r
	}
	var code packets.Code
	switch cause := cl.StopCause(); {
	case errors.Is(cause, packets.ErrSessionTakenOver):
		return ReasonDuplicateClientID
	case errors.Is(cause, packets.ErrServerShuttingDown):
		return ReasonServerInitiatedDisconnect
	case err == nil, errors.Is(err, packets.CodeDisconnectWillMessage):
		// DISCONNECT from the client (MQTT 5 may ask for the will to be sent).
		return ReasonClientInitiatedDisconnect
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonKeepAliveTimeout
	case errors.As(err, &code):
		return ReasonClientError
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.As(err, new(*net.OpError)):
		return ReasonConnectionLost
	}
	return ReasonConnectionLost
}

// OnPacketRead enforces AWS's limits and authorization on PUBLISH and
// SUBSCRIBE before mochi processes them. Returning ErrRejectPacket makes
// mochi close the connection.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	var o *observer // iotsim qualify's record of the client (observe.go)
	if m := h.b.watches.set.Load(); m != nil {
		id := cl.ID
		if pk.FixedHeader.Type == packets.Connect {
			id = pk.Connect.ClientIdentifier
		}
		if o = (*m)[id]; o != nil && pk.FixedHeader.Type == packets.Connect {
			h.b.observeRead(o, cl, &pk) // as the client sent it, before a fault changes it
		}
	}
	if set := h.b.faults.set.Load(); set != nil {
		if pk.FixedHeader.Type == packets.Connect {
			h.expireSession(set, cl, &pk)
		} else if err := h.faultsOnRead(set, cl, h.b.conn(cl), &pk); err != nil {
			return pk, err
		}
	}
	if o != nil && pk.FixedHeader.Type != packets.Connect {
		h.b.observeRead(o, cl, &pk) // after the faults marked its acknowledgement
	}
	if c := h.b.conn(cl); c != nil {
		h.b.unpark(cl, c) // the previous packet is done with
		switch pk.FixedHeader.Type {
		case packets.Subscribe, packets.Unsubscribe, packets.Publish:
			if pk.PacketID != 0 {
				h.b.park(cl, c, pk.PacketID)
			}
		}
	}
	switch pk.FixedHeader.Type {
	case packets.Connect:
		// An empty client id is answered in OnConnect with CONNACK 2; keep
		// mochi's own validation (which needs clean session) out of the way.
		if pk.Connect.ClientIdentifier == "" {
			pk.Connect.Clean = true
		}
		return pk, nil
	case packets.Publish:
		return h.readPublish(cl, pk)
	case packets.Subscribe:
		return h.readSubscribe(cl, pk)
	}
	return pk, nil
}

// reject closes the connection for a reason: MQTT 5 clients get a DISCONNECT
// with code.
func (h *hook) reject(cl *mqtt.Client, c *conn, reason string, code packets.Code, why string) error {
	c.setReason(reason)
	if c.v5 {
		_ = h.b.srv.DisconnectClient(cl, code)
	}
	h.b.log.Info("closing connection", "client", cl.ID, "reason", reason, "why", why)
	return fmt.Errorf("%s: %w", why, packets.ErrRejectPacket)
}

func (h *hook) readPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	c := h.b.conn(cl)
	if c == nil {
		return pk, packets.ErrRejectPacket
	}
	topic := pk.TopicName
	if topic == "" && pk.Properties.TopicAliasFlag && pk.Properties.TopicAlias > 0 {
		topic = cl.State.TopicAliases.Inbound.Set(pk.Properties.TopicAlias, "")
	}
	if pk.FixedHeader.Qos > 1 {
		return pk, h.reject(cl, c, ReasonClientError, packets.ErrQosNotSupported, "QoS 2 publish")
	}
	if len(pk.Payload) > MaxPayloadBytes {
		return pk, h.reject(cl, c, ReasonClientError, packets.ErrPacketTooLarge, fmt.Sprintf("payload of %d bytes", len(pk.Payload)))
	}
	if err := CheckTopicName(topic); err != nil {
		return pk, h.reject(cl, c, ReasonClientError, packets.ErrTopicNameInvalid, err.Error())
	}
	if pk.FixedHeader.Retain && strings.HasPrefix(topic, "$") {
		return pk, h.reject(cl, c, ReasonClientError, packets.ErrRetainNotSupported, "retained publish to reserved topic "+topic)
	}
	allowed := h.b.authz.Publish(c.p, topic, pk.FixedHeader.Retain)
	if allowed {
		c.st.sentMessage(len(pk.Payload))
	} else {
		c.st.authFailures.Add(1)
	}
	if !allowed && !c.v5 {
		return pk, h.reject(cl, c, ReasonAuthError, packets.ErrNotAuthorized, "publish to "+topic+" not authorized")
	}
	c.publishAllowed.Store(allowed)
	return pk, nil
}

func (h *hook) readSubscribe(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	c := h.b.conn(cl)
	if c == nil {
		return pk, packets.ErrRejectPacket
	}
	if len(pk.Filters) > MaxFiltersPerSubscribe {
		return pk, h.reject(cl, c, ReasonClientError, packets.ErrQuotaExceeded, fmt.Sprintf("%d filters in one SUBSCRIBE", len(pk.Filters)))
	}
	existing := cl.State.Subscriptions.GetAll()
	count := len(existing)
	decisions := make(map[string]bool, len(pk.Filters))
	for i := range pk.Filters {
		f := &pk.Filters[i]
		if err := CheckFilter(f.Filter); err != nil {
			return pk, h.reject(cl, c, ReasonClientError, packets.ErrTopicFilterInvalid, err.Error())
		}
		if f.Qos > 1 {
			f.Qos = 1
		}
		if hasWildcard(innerFilter(f.Filter)) {
			f.RetainHandling = 2 // AWS: retained messages only for exact-match filters
		}
		allowed := h.b.authz.Subscribe(c.p, f.Filter)
		if !allowed {
			c.st.authFailures.Add(1)
		}
		if !allowed && !c.v5 {
			return pk, h.reject(cl, c, ReasonAuthError, packets.ErrNotAuthorized, "subscribe to "+f.Filter+" not authorized")
		}
		if _, seen := decisions[f.Filter]; allowed && !seen {
			if _, dup := existing[f.Filter]; !dup {
				if count >= MaxSubscriptionsPerConnection {
					allowed = false
				} else {
					count++
				}
			}
		}
		decisions[f.Filter] = allowed
	}
	c.pending.Store(&decisions)
	return pk, nil
}

// OnACLCheck answers mochi's three questions: may this client publish
// (decided in OnPacketRead), may it subscribe to this filter (decided in
// OnPacketRead), may this message be delivered to it (Authorizer.Receive
// plus AWS topic matching). A delivery whose topic equals a filter the client
// is subscribing at that very moment is answered with the subscribe
// decision.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	c := h.b.conn(cl)
	if c == nil {
		return false
	}
	if write {
		return c.publishAllowed.Load()
	}
	if m := c.pending.Load(); m != nil {
		if allowed, ok := (*m)[topic]; ok {
			return allowed
		}
	}
	if !h.b.authz.Receive(c.p, topic) {
		return false
	}
	_, ok := matchingSubscription(cl, topic)
	return ok
}

// OnSubscribed emits the subscribed event for the granted filters.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	c := h.b.conn(cl)
	if c == nil {
		return
	}
	c.pending.Store(nil)
	h.b.unpark(cl, c)
	var topics []string
	for i, f := range pk.Filters {
		if i < len(reasonCodes) && reasonCodes[i] < 0x80 {
			topics = append(topics, f.Filter)
		}
	}
	h.b.emitSubscription(c, true, topics)
}

// OnUnsubscribed emits the unsubscribed event for an UNSUBSCRIBE (not for
// the clean-up after a disconnect).
func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.Closed() || pk.PacketID == 0 {
		return
	}
	c := h.b.conn(cl)
	if c == nil {
		return
	}
	h.b.unpark(cl, c)
	topics := make([]string, 0, len(pk.Filters))
	for _, f := range pk.Filters {
		topics = append(topics, f.Filter)
	}
	h.b.emitSubscription(c, false, topics)
}

// OnPublish hands authorized device publishes to the registered handlers.
// A Basic Ingest message ($aws/rules/<rule>/...) is acknowledged and goes
// to the handlers (the rules engine) only, never to subscribers, as AWS
// has it.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	var fanout error
	if strings.HasPrefix(pk.TopicName, rulesPrefix) {
		fanout = packets.CodeSuccessIgnore
	}
	hs := *h.b.handlers.Load()
	if len(hs) == 0 {
		return pk, fanout
	}
	c := h.b.conn(cl)
	if c == nil {
		return pk, fanout
	}
	if set := h.b.faults.set.Load(); set != nil && h.b.throttled(set, c, pk.TopicName, pk.Payload) {
		return pk, fanout
	}
	for _, e := range hs {
		if Match(innerFilter(e.filter), pk.TopicName) {
			e.h(c.p, pk.TopicName, pk.Payload)
		}
	}
	return pk, fanout
}

// OnQosComplete: a device's QoS 1 PUBLISH has been acknowledged; the
// delivery parked under its packet id goes back (see park).
func (h *hook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Puback {
		return
	}
	if c := h.b.conn(cl); c != nil {
		if p := c.parked.Load(); p != nil && p.PacketID == pk.PacketID {
			h.b.unpark(cl, c)
		}
	}
}

// OnPacketEncode counts the messages delivered to device clients, just
// before they are written (so a client that has read one sees it counted),
// and checks the reason codes of acknowledgements (checkAckCodes).
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if o := h.b.observed(cl.ID); o != nil {
		var conn int64
		if c := h.b.conn(cl); c != nil {
			conn = c.version
		}
		o.wrote(h.b.now(), conn, &pk)
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if c := h.b.conn(cl); c != nil {
			c.st.receivedMessage(len(pk.Payload))
		}
	case packets.Connack, packets.Puback, packets.Suback, packets.Unsuback:
		pk = h.b.checkAckCodes(cl, pk)
	}
	return pk
}
