package broker

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotagent/iotagent/cloud/registry"
)

var (
	// ErrInvalidOptions: New was given incomplete options.
	ErrInvalidOptions = errors.New("broker: invalid options")
	// ErrClosed: the broker has been closed.
	ErrClosed = errors.New("broker: closed")
	// ErrNotStarted: Start has not been called.
	ErrNotStarted = errors.New("broker: not started")
	// ErrNoClient: no connected client with that id.
	ErrNoClient = errors.New("broker: no such client")
	// ErrQoS: QoS must be 0 or 1.
	ErrQoS = errors.New("broker: QoS must be 0 or 1")
)

// Handler receives a device PUBLISH; see Broker.Handle. It must not modify
// payload.
type Handler func(p *Principal, topic string, payload []byte)

// Options configures a Broker.
type Options struct {
	// Addrs are the listen addresses, e.g. ["127.0.0.1:8883", "127.0.0.1:443"];
	// port 0 picks a free port.
	Addrs []string
	// Certificates are the server certificates (RSA and ECDSA, see pki).
	Certificates []tls.Certificate
	// ClientCAs verifies device certificates.
	ClientCAs *x509.CertPool
	// Registry is consulted on every CONNECT and watched for status changes.
	Registry *registry.Registry
	// Authorizer decides CONNECT, PUBLISH, SUBSCRIBE and deliveries; nil means ThingScoped{}.
	Authorizer Authorizer
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock for TLS certificate validity and event timestamps; nil means time.Now.
	Now func() time.Time
	// ConnectInterval is the least time between two accepted CONNECTs with
	// the same client id; a CONNECT sooner is refused as AWS refuses it.
	// 0 means AWS's limit, one second; negative means no limit.
	ConnectInterval time.Duration
	// AutoRegister, if set, runs on a CONNECT whose certificate the
	// registry does not know or holds as PENDING_ACTIVATION (JITR/JITP,
	// see provisioning.JIT), before the connection is refused.
	AutoRegister func(cert *x509.Certificate)
}

type handlerEntry struct {
	filter string
	h      Handler
}

// Broker is the embedded MQTT broker. Create it with New, then Start.
type Broker struct {
	o     Options
	authz Authorizer
	log   *slog.Logger
	now   func() time.Time
	tls   *tls.Config
	srv   *mqtt.Server

	handlers atomic.Pointer[[]handlerEntry]
	conns    sync.Map // *mqtt.Client -> *conn
	metrics  metrics  // per-client counters for Device Defender
	cas      caCache  // parsed registered CA certificates (clientauth.go)
	verified verifyCache
	held     withheld   // queued messages kept from a session's new owner (session.go)
	faults   faultState // injected faults (faults.go)
	watches  watches    // client ids observed for iotsim qualify (observe.go)
	stats    counters
	// Rate limits of the log records a peer can cause (ratelog.go).
	refusalLog, codeLog sampler

	// pending maps the net.Conn of a connection whose CONNECT was accepted
	// to its *mqtt.Client until mochi has sent the CONNACK
	// (OnSessionEstablished); if mochi gives up before, connEnded frees
	// what OnConnect set up, as no OnDisconnect follows.
	pending sync.Map
	// connectInterval is the least time between two accepted CONNECTs of
	// one client id (Options.ConnectInterval).
	connectInterval time.Duration

	mu        sync.Mutex // guards the fields below and handler registration
	started   bool
	closed    bool
	listeners []*tlsListener
}

// New validates o and builds a broker. It starts nothing.
func New(o Options) (*Broker, error) {
	var missing []string
	if len(o.Addrs) == 0 {
		missing = append(missing, "Addrs")
	}
	if len(o.Certificates) == 0 {
		missing = append(missing, "Certificates")
	}
	if o.ClientCAs == nil {
		missing = append(missing, "ClientCAs")
	}
	if o.Registry == nil {
		missing = append(missing, "Registry")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("new broker: missing %v: %w", missing, ErrInvalidOptions)
	}
	b := &Broker{o: o, authz: o.Authorizer, log: o.Logger, now: o.Now, connectInterval: o.ConnectInterval}
	if b.authz == nil {
		b.authz = ThingScoped{}
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	// Every record is bounded, whatever a peer sent (ratelog.go).
	b.log = slog.New(boundedHandler{b.log.Handler()})
	switch {
	case b.connectInterval == 0:
		b.connectInterval = minConnectInterval
	case b.connectInterval < 0:
		b.connectInterval = 0
	}
	if b.now == nil {
		b.now = time.Now
	}
	// Client certificates chain to ClientCAs or to a registered ACTIVE CA,
	// read at each handshake (verifyClient); no certificate_authorities
	// hint is sent, so that clients send their chain whatever its CA.
	b.tls = &tls.Config{
		MinVersion:             tls.VersionTLS12,
		Certificates:           o.Certificates,
		ClientAuth:             tls.RequireAnyClientCert,
		VerifyPeerCertificate:  b.verifyClient,
		SessionTicketsDisabled: true,
		NextProtos:             []string{ALPNMQTTCert, ALPNMQTT, ALPNHTTPCert, ALPNHTTP},
		Time:                   b.now,
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1
	caps.SubIDAvailable = 0
	caps.MaximumPacketSize = maxPacketSize
	caps.ReceiveMaximum = ReceiveMaximum
	caps.TopicAliasMaximum = TopicAliasMaximum
	caps.MaximumSessionExpiryInterval = MaxSessionExpiry
	// No expiry is invented: mochi gives every message without a Message
	// Expiry Interval this many seconds and tells MQTT 5 subscribers so,
	// where AWS's messages without one do not expire. (AWS drops retained
	// messages 3 years after their last update; iotsim keeps them, in
	// memory, for as long as it runs.)
	caps.MaximumMessageExpiryInterval = 0
	// A PUBACK carries no properties of its own; mochi would echo the
	// PUBLISH's user properties in it.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	// mochi gives each client a queue of pending writes of this many
	// messages, allocated at connect (a pointer each, which the GC scans;
	// its default of 8,192 is 64 KiB per connection). A subscriber that
	// falls this far behind loses messages; AWS discards beyond 100
	// publishes/s per connection, so this is ten seconds at AWS's limit.
	caps.MaximumClientWritesPending = maxClientWritesPending
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		InlineClient:           true,
		Logger:                 b.log.With("component", "mochi"),
		SysTopicResendInterval: 365 * 24 * 3600, // AWS has no $SYS topics
	})
	b.handlers.Store(&[]handlerEntry{})
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("new broker: add hook: %w", err)
	}
	return b, nil
}

// Handle registers h for every authorized PUBLISH from a client whose topic
// matches filter (AWS matching, see Match). h runs synchronously on the
// client's connection, so calls are in order per client; it must not block
// for long. The message is still delivered to subscribers as usual.
// An invalid filter is logged and matches nothing.
func (b *Broker) Handle(filter string, h Handler) {
	if err := CheckFilter(filter); err != nil || h == nil {
		b.log.Warn("handler not registered", "filter", filter, "err", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	hs := append(append([]handlerEntry(nil), *b.handlers.Load()...), handlerEntry{filter: filter, h: h})
	b.handlers.Store(&hs)
}

// closeListenerClients disconnects the clients of listener id (server
// shutting down). It is mochi's Server.closeListenerClients without
// Clients.GetByListener, which read-locks the client map a second time
// (through Len) and so deadlocks when a client ending its connection waits
// for the write lock in between (mochi v2.7.9; a Broker.Close hung for 12
// minutes in a CI run).
func (b *Broker) closeListenerClients(id string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// Start listens on every address and serves. It returns once listening.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.started {
		return errors.New("broker: already started")
	}
	for i, addr := range b.o.Addrs {
		l := newTLSListener(fmt.Sprintf("mqtts%d", i), addr, b.tls, b.log, &b.stats)
		l.ended = b.connEnded
		l.wrap = func(tc *tls.Conn) net.Conn { return &faultConn{Conn: tc, b: b} }
		l.closeClients = b.closeListenerClients
		if err := b.srv.AddListener(l); err != nil {
			for _, prev := range b.listeners {
				_ = prev.ln.Close()
			}
			b.listeners = nil
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		b.listeners = append(b.listeners, l)
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	b.started = true
	b.o.Registry.WatchCertificates(b.certificateChanged)
	return nil
}

// Addrs returns the actual host:port of each listener, in Options order
// (the configured addresses before Start).
func (b *Broker) Addrs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.listeners) == 0 {
		return append([]string(nil), b.o.Addrs...)
	}
	out := make([]string, len(b.listeners))
	for i, l := range b.listeners {
		out[i] = l.Address()
	}
	return out
}

// Close disconnects every client, stops the listeners and waits for the
// server to stop. It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started, ls := b.started, b.listeners
	b.mu.Unlock()
	if !started {
		return nil
	}
	err := b.srv.Close()
	for _, l := range ls {
		l.wait()
	}
	if err != nil {
		return fmt.Errorf("close broker: %w", err)
	}
	return nil
}

func (b *Broker) usable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if !b.started {
		return ErrNotStarted
	}
	return nil
}

// Publish publishes from the service side to every subscriber whose
// Authorizer.Receive allows the topic.
func (b *Broker) Publish(topic string, payload []byte, qos byte) error {
	if err := CheckTopicName(topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if qos > 1 {
		return fmt.Errorf("publish %s: %w", topic, ErrQoS)
	}
	if err := b.usable(); err != nil {
		return err
	}
	if err := b.srv.Publish(topic, payload, false, qos); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// PublishTo sends a message to one client only (AWS's Jobs replies go
// straight to the requester), provided it is connected, has a subscription
// matching topic and may receive it. It returns ErrNoClient if the client is
// not connected; a message the client is not subscribed to or may not
// receive is dropped silently, as AWS does.
func (b *Broker) PublishTo(clientID, topic string, payload []byte, qos byte) error {
	if err := CheckTopicName(topic); err != nil {
		return fmt.Errorf("publish to %s: %w", clientID, err)
	}
	if qos > 1 {
		return fmt.Errorf("publish to %s: %w", clientID, ErrQoS)
	}
	if err := b.usable(); err != nil {
		return err
	}
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok || cl.Closed() || cl.Net.Inline {
		return fmt.Errorf("publish to %s: %w", clientID, ErrNoClient)
	}
	c := b.conn(cl)
	if c == nil {
		return fmt.Errorf("publish to %s: %w", clientID, ErrNoClient)
	}
	sub, ok := matchingSubscription(cl, topic)
	if !ok || !b.authz.Receive(c.p, topic) {
		return nil
	}
	if sub.Qos < qos {
		qos = sub.Qos
	}
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		Payload:     payload,
		Created:     b.now().Unix(),
	}
	if qos > 0 {
		id, err := cl.NextPacketID()
		if err != nil {
			return fmt.Errorf("publish to %s: %w", clientID, err)
		}
		out.PacketID = uint16(id)
		cl.State.Inflight.Set(out)
	}
	if err := cl.WritePacket(out); err != nil {
		if qos > 0 {
			cl.State.Inflight.Delete(out.PacketID)
		}
		return fmt.Errorf("publish to %s: %w", clientID, err)
	}
	return nil
}

// Disconnect closes the connection of clientID, if connected
// (disconnectReason API_INITIATED_DISCONNECT).
func (b *Broker) Disconnect(clientID string) {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok || cl.Closed() || cl.Net.Inline {
		return
	}
	if c := b.conn(cl); c != nil {
		c.setReason(ReasonAPIInitiatedDisconnect)
	}
	b.kick(cl, packets.ErrAdministrativeAction)
}

// certificateChanged closes every connection of a certificate that left ACTIVE.
func (b *Broker) certificateChanged(id, status string) {
	if status == registry.StatusActive {
		return
	}
	b.conns.Range(func(k, v any) bool {
		cl, c := k.(*mqtt.Client), v.(*conn)
		if c.p.CertificateID == id && !cl.Closed() {
			c.setReason(ReasonAuthError)
			b.kick(cl, packets.ErrNotAuthorized)
		}
		return true
	})
}

// kick closes a client connection: MQTT 5 clients get a DISCONNECT with
// code first; MQTT 3.1.1 has no server DISCONNECT, so the socket is closed.
func (b *Broker) kick(cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion == 5 {
		_ = b.srv.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

func (b *Broker) conn(cl *mqtt.Client) *conn {
	v, ok := b.conns.Load(cl)
	if !ok {
		return nil
	}
	return v.(*conn)
}

// releaseClient drops the connection's hold on its client id's state, once.
func (b *Broker) releaseClient(c *conn) {
	if c.released.CompareAndSwap(false, true) {
		b.metrics.release(c.st, b.now())
	}
}

// connEnded runs when the listener is done with a connection: if mochi
// gave up on it between an accepted CONNECT and the CONNACK (the CONNACK
// could not be written), OnDisconnect never runs, so its state is freed
// here.
func (b *Broker) connEnded(nc net.Conn) {
	v, ok := b.pending.LoadAndDelete(nc)
	if !ok {
		return
	}
	cl := v.(*mqtt.Client)
	if c := b.conn(cl); c != nil && !c.established.Load() {
		b.conns.Delete(cl)
		b.releaseClient(c)
	}
}

// matchingSubscription returns the client's subscription with the highest
// QoS whose filter matches topic with AWS semantics.
func matchingSubscription(cl *mqtt.Client, topic string) (packets.Subscription, bool) {
	var best packets.Subscription
	found := false
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		if Match(innerFilter(filter), topic) && (!found || sub.Qos > best.Qos) {
			best, found = sub, true
		}
	}
	return best, found
}

// conn is the broker's state for one MQTT connection (and, for persistent
// sessions, for the session after it).
type conn struct {
	p       *Principal
	v5      bool
	session string
	version int64
	// st is the client id's state, held from the accepted CONNECT until
	// released (once) when the connection ends.
	st       *clientState
	released atomic.Bool

	established atomic.Bool
	takenOver   atomic.Bool
	reason      atomic.Pointer[string]
	// pending holds the SUBSCRIBE decisions between OnPacketRead and
	// OnSubscribed, where mochi asks OnACLCheck about each filter.
	pending atomic.Pointer[map[string]bool]
	// publishAllowed is the MQTT 5 PUBLISH decision taken in OnPacketRead,
	// read by OnACLCheck on the same goroutine.
	publishAllowed atomic.Bool
	// faultReads counts the packets read while a fault was active
	// (FaultCloseAfter); since is when the CONNACK went out.
	faultReads atomic.Int64
	since      time.Time

	// parked is a delivery set aside while a device packet with the same
	// packet id is processed (see Broker.park).
	parked atomic.Pointer[packets.Packet]
}

// setReason records why the broker is closing the connection; the first
// reason wins.
func (c *conn) setReason(r string) { c.reason.CompareAndSwap(nil, &r) }

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
