package transport

import (
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/agent/outbox"
)

// ALPNProtocol is offered when Options.ALPN is set: AWS IoT Core's name for
// MQTT with X.509 client certificates on port 443.
const ALPNProtocol = "x-amzn-mqtt-ca"

// Errors for callers that branch.
var (
	// ErrNotConnected: there is no connection now, or it went away before
	// the PUBACK. Retrying after WaitConnected is safe.
	ErrNotConnected = errors.New("transport: not connected")
	// ErrInvalid marks bad options, topics, filters, QoS or payload sizes.
	ErrInvalid = errors.New("transport: invalid argument")
	// ErrRunning is returned by a second concurrent Run.
	ErrRunning = errors.New("transport: already running")
	// ErrNoAck: a PUBACK or SUBACK did not come within the ack timeout.
	// MQTT resends an unacknowledged PUBLISH only on a new connection, so
	// the client gives the connection up and reconnects.
	ErrNoAck = errors.New("transport: no acknowledgement")
)

// Handler receives a message. It must not block: the transport calls
// handlers from one dispatch goroutine, in arrival order.
type Handler = func(topic string, payload []byte)

// Options configure a Client. Zero durations take the documented defaults.
type Options struct {
	Broker string // "host:port"
	// ServerName is the TLS server name (SNI) and the name the server
	// certificate is verified against. Set it even when Broker is an IP
	// address: crypto/tls sends no SNI for IP literals. When empty it
	// defaults to Broker's host, which must then not be an IP address.
	ServerName  string
	ALPN        bool           // offer "x-amzn-mqtt-ca" (AWS port-443 mode)
	RootCAs     *x509.CertPool // nil: the system roots
	Certificate tls.Certificate
	ClientID    string // = thing name

	KeepAlive time.Duration // default 60 s; AWS allows 30 s to 20 min
	// ConnectTimeout bounds dial, TLS and CONNACK, and is paho's write
	// timeout. Default 10 s. paho's Publish can block for this long when
	// the connection dies under it, so Run may take this long to return
	// if a connection died during an outbox burst just before ctx ended.
	ConnectTimeout time.Duration
	CleanSession   bool // default false: persistent session
	// AckTimeout is how long a PUBLISH or SUBSCRIBE waits for its
	// acknowledgement before the connection is given up as broken.
	// Default 30 s.
	AckTimeout time.Duration
	BackoffMin time.Duration // default 500 ms
	BackoffMax time.Duration // default 2 min
	// DrainRate limits outbox publishes per second (AWS allows 100
	// publishes/s per connection, in and out combined, and discards the
	// excess). 0 means 50; negative means unlimited.
	DrainRate int

	Outbox *outbox.Outbox // may be nil
	// AuthBackoffMin and AuthBackoffMax bound the backoff after the broker
	// closed the connection right after a PUBLISH or SUBSCRIBE (an IoT
	// policy that denies it, see attribution.go): it starts at min and
	// doubles up to max. Defaults 5 s and 10 min.
	AuthBackoffMin, AuthBackoffMax time.Duration
	// QuarantineAfter is how many connections in a row the broker may
	// close right after the PUBLISH of one outbox message before the
	// message goes to the outbox's quarantine. Default 3.
	QuarantineAfter int
	// OnQuarantine, if set, is called (from Run's goroutine) after a
	// message was quarantined, with the reason recorded with it.
	OnQuarantine func(m outbox.Message, reason string)
	Logger       *slog.Logger // nil: discard
	// OnConnect runs in its own goroutine after every (re)connect, once all
	// subscriptions are re-established; ctx is cancelled on disconnect. Run
	// waits for it to return.
	OnConnect func(ctx context.Context)
}

// Stats are counters since New.
type Stats struct {
	Connects, ConnectFailures, Disconnects uint64
	Connected                              bool
	LastError                              string
	Published                              uint64 // publishes completed (PUBACK for QoS 1), outbox and direct
	Delivered                              uint64 // incoming messages passed to at least one handler
	// Subscriptions is how many filters are registered; Subscribed how
	// many of them the broker has acknowledged on the current connection
	// (0 while disconnected). Fewer is an agent that is "alive but deaf".
	Subscriptions, Subscribed int
	// LastAttempt is when the last connection attempt started (zero
	// before the first): while disconnected, a recent one shows that Run
	// is still trying.
	LastAttempt time.Time
	// NextAttempt is when the next attempt is due while Run waits out a
	// backoff (zero otherwise).
	NextAttempt time.Time
	// Diagnosis is the likely cause of the broker's last close (or
	// subscription refusal), until an acknowledgement disproves it; nil
	// when there is none.
	Diagnosis *Diagnosis
	// PublishFailures counts publishes that ended without an
	// acknowledgement (connection lost, timeout); LastPublishAck is the
	// time of the last PUBACK (or QoS 0 send).
	PublishFailures uint64
	LastPublishAck  time.Time
	// Quarantined counts outbox messages this client quarantined.
	Quarantined uint64
}

const (
	defaultKeepAlive      = 60 * time.Second
	defaultConnectTimeout = 10 * time.Second
	defaultBackoffMin     = 500 * time.Millisecond
	defaultBackoffMax     = 2 * time.Minute
	defaultDrainRate      = 50
	drainBurst            = 10
	drainBatch            = 20               // outbox messages in flight at once
	defaultAckTimeout     = 30 * time.Second // PUBACK/SUBACK wait before reconnecting
	minConnectGap         = time.Second      // AWS: 1 CONNECT/s per client ID
	disconnectQuiesce     = 1000             // ms paho waits to send DISCONNECT
	inboundBuffer         = 64
)

type subscription struct {
	filter string
	qos    byte
	h      Handler
}

type inMsg struct {
	topic   string
	payload []byte
}

// Client is an MQTT connection that reconnects until its Run context ends.
// Its methods are safe for concurrent use.
type Client struct {
	o      Options
	cert   *atomic.Pointer[tls.Certificate] // the client certificate of the next handshake
	tlsCfg *tls.Config
	log    *slog.Logger

	// Seams, set by New and replaced by tests.
	rand          func(int64) int64
	sleep         func(ctx context.Context, d time.Duration) error
	now           func() time.Time
	minConnectGap time.Duration
	ackTimeout    time.Duration

	running atomic.Bool
	subKick chan struct{} // capacity 1: a new subscription is waiting
	wake    chan struct{} // capacity 1: RetryNow
	// bg counts goroutines that may be stuck inside paho's Publish after
	// their connection died (paho blocks there up to its write timeout):
	// drainers and direct publishes. Reconnecting does not wait for them;
	// Run does, before it returns.
	bg sync.WaitGroup

	mu      sync.Mutex
	subs    []subscription // registration order
	sess    *session       // nil while disconnected
	connCh  chan struct{}  // closed while connected
	subCh   chan struct{}  // closed and replaced when the subscription state changes
	lastErr string
	auth    authState // see attribution.go

	connects, failures, disconnects, published, delivered atomic.Uint64
	pubFailures                                           atomic.Uint64
	lastAttempt, lastPubAck                               atomic.Int64 // unix nanoseconds
}

// session is one live connection.
type session struct {
	pc       mqtt.Client
	lost     chan struct{} // closed by paho's connection-lost handler
	lostOnce sync.Once
	lostErr  error         // set before lost is closed
	dead     chan struct{} // closed at the first read/write error or Close of the socket
	deadOnce sync.Once
	done     chan struct{}   // closed when the session ends
	fail     chan error      // capacity 1: an acknowledgement did not come; reconnect (giveUp)
	subbed   map[string]byte // filter -> granted QoS; session goroutine only
	live     atomic.Int32    // filters the broker acknowledged (not refused)

	sentMu sync.Mutex
	sent   []*sentPkt // PUBLISH and SUBSCRIBE packets not known to be acknowledged
	blamed *sentPkt   // what the broker's close is attributed to; set when the session ends
}

// New validates o and returns a Client. It starts nothing: call Run.
func New(o Options) (*Client, error) {
	var errs []error
	host, port, err := net.SplitHostPort(o.Broker)
	if err != nil {
		errs = append(errs, fmt.Errorf("broker %q: %w", o.Broker, err))
	} else if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 || host == "" {
		errs = append(errs, fmt.Errorf("broker %q: want host:port", o.Broker))
	}
	if o.ServerName == "" && err == nil {
		if net.ParseIP(host) != nil {
			errs = append(errs, fmt.Errorf("server name: required when broker %q is an IP address (no SNI otherwise)", o.Broker))
		}
		o.ServerName = host
	}
	switch {
	case o.ClientID == "" || len(o.ClientID) > maxClientIDBytes:
		errs = append(errs, fmt.Errorf("client id: want 1-%d bytes, got %d", maxClientIDBytes, len(o.ClientID)))
	case o.ClientID[0] == '$' || !utf8.ValidString(o.ClientID):
		errs = append(errs, fmt.Errorf("client id %q: must be UTF-8 and not start with '$'", o.ClientID))
	}
	if len(o.Certificate.Certificate) == 0 {
		errs = append(errs, errors.New("certificate: empty chain"))
	}
	if _, ok := o.Certificate.PrivateKey.(crypto.Signer); !ok {
		errs = append(errs, fmt.Errorf("certificate: private key %T is not a crypto.Signer", o.Certificate.PrivateKey))
	}
	def := func(d *time.Duration, v time.Duration, name string) {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			errs = append(errs, fmt.Errorf("%s: negative (%v)", name, *d))
		}
	}
	def(&o.KeepAlive, defaultKeepAlive, "keep-alive")
	def(&o.ConnectTimeout, defaultConnectTimeout, "connect timeout")
	def(&o.BackoffMin, defaultBackoffMin, "backoff min")
	def(&o.BackoffMax, defaultBackoffMax, "backoff max")
	def(&o.AuthBackoffMin, defaultAuthBackoffMin, "auth backoff min")
	def(&o.AuthBackoffMax, defaultAuthBackoffMax, "auth backoff max")
	if o.AuthBackoffMin > o.AuthBackoffMax {
		errs = append(errs, fmt.Errorf("auth backoff: min %v > max %v", o.AuthBackoffMin, o.AuthBackoffMax))
	}
	switch {
	case o.QuarantineAfter == 0:
		o.QuarantineAfter = defaultQuarantineAfter
	case o.QuarantineAfter < 0:
		errs = append(errs, fmt.Errorf("quarantine after: negative (%d)", o.QuarantineAfter))
	}
	if o.KeepAlive > 0 && (o.KeepAlive < 30*time.Second || o.KeepAlive > 20*time.Minute) {
		errs = append(errs, fmt.Errorf("keep-alive %v: AWS IoT allows 30s to 20m", o.KeepAlive))
	}
	if o.BackoffMin > 0 && o.BackoffMax > 0 && o.BackoffMin > o.BackoffMax {
		errs = append(errs, fmt.Errorf("backoff: min %v > max %v", o.BackoffMin, o.BackoffMax))
	}
	if o.DrainRate == 0 {
		o.DrainRate = defaultDrainRate
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("transport options: %w: %w", ErrInvalid, err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cert := new(atomic.Pointer[tls.Certificate])
	cert.Store(&o.Certificate)
	cfg := &tls.Config{
		ServerName: o.ServerName,
		RootCAs:    o.RootCAs,
		MinVersion: tls.VersionTLS12,
		// Read at every handshake, so that SetCertificate takes effect on
		// the next connection.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert.Load(), nil },
	}
	if o.ALPN {
		cfg.NextProtos = []string{ALPNProtocol}
	}
	return &Client{
		o:             o,
		cert:          cert,
		tlsCfg:        cfg,
		log:           o.Logger.With("component", "mqtt", "broker", o.Broker, "client_id", o.ClientID),
		rand:          rand.Int64N,
		sleep:         sleepCtx,
		now:           time.Now,
		minConnectGap: minConnectGap,
		ackTimeout:    cmp.Or(o.AckTimeout, defaultAckTimeout),
		subKick:       make(chan struct{}, 1),
		wake:          make(chan struct{}, 1),
		connCh:        make(chan struct{}),
		subCh:         make(chan struct{}),
	}, nil
}

// Subscribe registers h for filter. The subscription is made now if
// connected, and again after every reconnect. Registering a filter again
// replaces its handler and QoS. QoS is 0 or 1.
func (c *Client) Subscribe(filter string, qos byte, h Handler) error {
	if err := validateFilter(filter); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if qos > 1 {
		return fmt.Errorf("subscribe %s: %w: QoS %d", filter, ErrInvalid, qos)
	}
	if h == nil {
		return fmt.Errorf("subscribe %s: %w: nil handler", filter, ErrInvalid)
	}
	c.mu.Lock()
	replaced := false
	for i := range c.subs {
		if c.subs[i].filter == filter {
			c.subs[i] = subscription{filter, qos, h}
			replaced = true
		}
	}
	if !replaced {
		if len(c.subs) >= maxSubscriptions {
			c.mu.Unlock()
			return fmt.Errorf("subscribe %s: %w: AWS allows %d subscriptions per connection", filter, ErrInvalid, maxSubscriptions)
		}
		c.subs = append(c.subs, subscription{filter, qos, h})
	}
	c.mu.Unlock()
	select {
	case c.subKick <- struct{}{}:
	default:
	}
	return nil
}

// Publish sends one message now and, for QoS 1, waits for its PUBACK. It
// returns ErrNotConnected at once when offline, and an error wrapping
// ErrNotConnected if the connection ends before the PUBACK. A PUBACK that
// does not come within the ack timeout ends the connection too (the error
// wraps ErrNoAck and ErrNotConnected): MQTT resends a PUBLISH only on a new
// connection, and a caller that waited on would wait as long as this
// connection lives. Use it for request/response traffic (shadow, jobs);
// queue telemetry and alarms in the outbox instead.
func (c *Client) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	if err := validatePublish(topic, qos, payload); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	c.mu.Lock()
	s := c.sess
	if s != nil {
		c.bg.Add(1) // before Run's bg.Wait: Run waits only after sess is nil
	}
	c.mu.Unlock()
	if s == nil {
		return ErrNotConnected
	}
	select {
	case <-s.dead:
		c.bg.Done()
		return ErrNotConnected
	default:
	}
	// paho's Publish can block (up to its write timeout) when the
	// connection dies under it; keep the caller free to leave.
	tokc := make(chan mqtt.Token, 1)
	go func() {
		defer c.bg.Done()
		var p *sentPkt
		if qos > 0 {
			p = c.track(s, kindPublish, []string{topic}, 0, c.now())
		}
		tok := s.pc.Publish(topic, qos, false, payload)
		if p != nil {
			c.sent(s, p, tok)
		}
		tokc <- tok
	}()
	var tok mqtt.Token
	select {
	case tok = <-tokc:
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	case <-s.done:
		return fmt.Errorf("publish %s: connection closed: %w", topic, ErrNotConnected)
	}
	var ackWait <-chan time.Time // QoS 0: paho's token ends with the write
	if qos > 0 {
		t := time.NewTimer(c.ackTimeout)
		defer t.Stop()
		ackWait = t.C
	}
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			c.pubFailures.Add(1)
			if errors.Is(err, mqtt.ErrNotConnected) {
				return ErrNotConnected
			}
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		c.publishAcked(kindPublish, topic)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	case <-s.done:
		c.pubFailures.Add(1)
		return fmt.Errorf("publish %s: connection closed before PUBACK: %w", topic, ErrNotConnected)
	case <-s.dead:
		c.pubFailures.Add(1)
		return fmt.Errorf("publish %s: connection lost before PUBACK: %w", topic, ErrNotConnected)
	case <-ackWait:
		c.pubFailures.Add(1)
		err := fmt.Errorf("publish %s: %w within %v; reconnecting: %w", topic, ErrNoAck, c.ackTimeout, ErrNotConnected)
		giveUp(s, err)
		return err
	}
}

// giveUp asks the session's connection to end with err (serve reconnects).
// Only the first reason is kept.
func giveUp(s *session, err error) {
	select {
	case s.fail <- err:
	default:
	}
}

// Connected reports whether a connection is up now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

// WaitConnected returns when a connection is up, or ctx's error.
func (c *Client) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	ch := c.connCh
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitSubscribed waits until the client is connected and the broker has
// acknowledged every registered subscription on this connection, so that
// a request published next cannot have its answer lost to a subscription
// still on its way.
func (c *Client) WaitSubscribed(ctx context.Context) error {
	for {
		c.mu.Lock()
		ok := c.sess != nil && int(c.sess.live.Load()) >= len(c.subs)
		ch := c.subCh
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// subsChangedLocked wakes WaitSubscribed; c.mu must be held.
func (c *Client) subsChangedLocked() {
	close(c.subCh)
	c.subCh = make(chan struct{})
}

// SetCertificate replaces the client certificate (after a certificate
// rotation); the next connection uses it. The current one is not touched.
func (c *Client) SetCertificate(cert tls.Certificate) {
	c.cert.Store(&cert)
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	connected, lastErr, nsubs, live := c.sess != nil, c.lastErr, len(c.subs), 0
	if c.sess != nil {
		live = int(c.sess.live.Load())
	}
	c.mu.Unlock()
	var last time.Time
	if ns := c.lastAttempt.Load(); ns != 0 {
		last = time.Unix(0, ns)
	}
	c.mu.Lock()
	var dg *Diagnosis
	if c.auth.diag != nil {
		cp := *c.auth.diag
		dg = &cp
	}
	next, quarantined := c.auth.next, c.auth.quarantin
	c.mu.Unlock()
	var lastAck time.Time
	if ns := c.lastPubAck.Load(); ns != 0 {
		lastAck = time.Unix(0, ns)
	}
	return Stats{
		NextAttempt:     next,
		Diagnosis:       dg,
		PublishFailures: c.pubFailures.Load(),
		LastPublishAck:  lastAck,
		Quarantined:     quarantined,
		Subscriptions:   nsubs,
		Subscribed:      live,
		LastAttempt:     last,
		Connects:        c.connects.Load(),
		ConnectFailures: c.failures.Load(),
		Disconnects:     c.disconnects.Load(),
		Connected:       connected,
		LastError:       lastErr,
		Published:       c.published.Load(),
		Delivered:       c.delivered.Load(),
	}
}

// Run connects, keeps reconnecting with backoff, re-subscribes, dispatches
// incoming messages and drains the outbox until ctx ends; then it
// disconnects and returns nil once its goroutines have exited.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer c.running.Store(false)
	if c.o.Logger.Handler() != slog.DiscardHandler {
		pl := c.o.Logger.With("component", "paho")
		pahoLog.Store(pl)
		defer pahoLog.CompareAndSwap(pl, nil)
	}

	inbound := make(chan inMsg, inboundBuffer)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.dispatch(inbound, stop)
	}()
	defer func() {
		c.bg.Wait() // before stop: a paho goroutine may still be delivering
		close(stop)
		wg.Wait()
	}()

	bo := &backoff{min: c.o.BackoffMin, max: c.o.BackoffMax, rand: c.rand}
	var lastAttempt time.Time
	takeovers := 0 // connections in a row the broker closed soon after they came up
	for ctx.Err() == nil {
		if !lastAttempt.IsZero() {
			if wait := lastAttempt.Add(c.minConnectGap).Sub(c.now()); wait > 0 {
				if c.sleep(ctx, wait) != nil {
					break
				}
			}
		}
		lastAttempt = c.now()
		c.lastAttempt.Store(lastAttempt.UnixNano())
		s, err := c.connect(ctx, inbound, stop)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.failures.Add(1)
			c.setLastError(err)
			d := bo.next()
			c.log.Warn("mqtt connect failed", "err", err, "retry_in", d)
			if c.backoffSleep(ctx, d) != nil {
				break
			}
			continue
		}
		connected := c.now()
		if c.serve(ctx, s) {
			bo.reset()
		}
		if ctx.Err() != nil {
			break
		}
		d, blamed := c.afterSession(s)
		switch {
		case !blamed:
			d = bo.next()
			c.logReconnect(&takeovers, c.now().Sub(connected), d, false)
		case c.blameRun() > 1:
			// The same packet blamed again: a refusal, not a takeover.
			takeovers = 0
		default:
			// Blamed once: a takeover that came while the packet was
			// unacknowledged looks the same, so it still counts.
			c.logReconnect(&takeovers, c.now().Sub(connected), d, true)
		}
		if c.backoffSleep(ctx, d) != nil {
			break
		}
	}
	return nil
}

// Repeated takeovers: AWS IoT Core allows one connection per client ID
// and, on MQTT 3.1.1, closes the older one without saying why when
// another connects with the same ID. Two agents (or an agent and a test
// client) with one thing name then throw each other out every few
// seconds. takeoverWindow is how soon after connecting a closed
// connection counts, takeoverRuns how many in a row name the cause.
const (
	takeoverWindow = 10 * time.Second
	takeoverRuns   = 3
)

// ErrClientIDTakeover is the last error when the broker keeps closing
// connections soon after they come up.
var ErrClientIDTakeover = errors.New("another connection probably uses this client ID")

// logReconnect logs the reconnect after a connection that lasted lived,
// and names a client ID used twice when the broker keeps closing
// connections soon after they come up.
func (c *Client) logReconnect(takeovers *int, lived, retry time.Duration, blamed bool) {
	if lived >= takeoverWindow {
		*takeovers = 0
	} else {
		*takeovers++
	}
	if *takeovers < takeoverRuns {
		if !blamed { // afterSession logged the blamed close and its retry
			c.log.Info("mqtt reconnecting", "connected_for", lived.Round(time.Millisecond), "retry_in", retry)
		}
		return
	}
	// A close blamed on a packet may be a policy refusal or a takeover that
	// came while the packet was unacknowledged: MQTT 3.1.1 does not say
	// which. The log and the last error name both; diag names the topic.
	err := fmt.Errorf("the broker closed %d connections in a row within %s of connecting: %w (thing name %q): AWS IoT allows one connection per client ID; or the policy refuses a topic the agent uses (iotagent diag)",
		*takeovers, takeoverWindow, ErrClientIDTakeover, c.o.ClientID)
	// The log line first: whoever sees the last error finds it logged.
	c.log.Warn("mqtt: the broker keeps closing connections soon after they come up (another connection with this thing name, a policy refusal, or the server dropping it)", "client_id", c.o.ClientID,
		"in_a_row", *takeovers, "connected_for", lived.Round(time.Millisecond), "retry_in", retry, "err", err)
	c.setLastError(err)
}

// connect makes one connection attempt with a fresh paho client.
func (c *Client) connect(ctx context.Context, inbound chan<- inMsg, stop <-chan struct{}) (*session, error) {
	s := &session{
		lost:   make(chan struct{}),
		dead:   make(chan struct{}),
		done:   make(chan struct{}),
		fail:   make(chan error, 1),
		subbed: make(map[string]byte),
	}
	attemptCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		connMu  sync.Mutex
		rawConn net.Conn
	)
	opts := mqtt.NewClientOptions().
		AddBroker("tls://" + c.o.Broker).
		SetClientID(c.o.ClientID).
		SetProtocolVersion(4). // no silent second CONNECT as MQTT 3.1
		SetKeepAlive(c.o.KeepAlive).
		SetConnectTimeout(c.o.ConnectTimeout).
		SetWriteTimeout(c.o.ConnectTimeout).
		SetCleanSession(c.o.CleanSession).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetOrderMatters(true).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
			conn, err := c.dial(attemptCtx)
			if err != nil {
				return nil, err
			}
			connMu.Lock()
			defer connMu.Unlock()
			if attemptCtx.Err() != nil { // cancelled while dialling
				conn.Close()
				return nil, attemptCtx.Err()
			}
			rawConn = conn
			return &watchedConn{Conn: conn, s: s}, nil
		}).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			select {
			case inbound <- inMsg{m.Topic(), m.Payload()}:
			case <-stop:
			}
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			s.lostOnce.Do(func() {
				s.lostErr = err
				close(s.lost)
			})
		})
	pc := mqtt.NewClient(opts)
	tok := pc.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		cancel() // aborts a dial in progress
		connMu.Lock()
		if rawConn != nil {
			rawConn.Close() // aborts the wait for CONNACK
		}
		connMu.Unlock()
		<-tok.Done()
		if tok.Error() == nil {
			pc.Disconnect(0)
		}
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", c.o.Broker, err)
	}
	s.pc = pc
	return s, nil
}

// dial opens the TLS connection and checks ALPN.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: c.o.ConnectTimeout, KeepAlive: 30 * time.Second},
		Config:    c.tlsCfg,
	}
	conn, err := d.DialContext(ctx, "tcp", c.o.Broker)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.o.Broker, err)
	}
	if c.o.ALPN {
		if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != ALPNProtocol {
			conn.Close()
			return nil, fmt.Errorf("dial %s: server negotiated ALPN %q, want %q", c.o.Broker, p, ALPNProtocol)
		}
	}
	return conn, nil
}

// serve runs one connection until it is lost or ctx ends. It reports
// whether the session got as far as re-establishing its subscriptions.
func (c *Client) serve(ctx context.Context, s *session) (ready bool) {
	c.connects.Add(1)
	c.mu.Lock()
	c.sess = s
	close(c.connCh)
	c.subsChangedLocked()
	c.mu.Unlock()
	c.log.Info("mqtt connected")

	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		c.mu.Lock()
		c.sess = nil
		c.connCh = make(chan struct{})
		c.subsChangedLocked()
		c.mu.Unlock()
		close(s.done)
		cancel()
		wg.Wait()
		if isClosed(s.dead) && ctx.Err() == nil {
			// The socket failed: let paho finish with it, so that every
			// acknowledgement read before the close has been processed.
			t := time.NewTimer(lostWait)
			select {
			case <-s.lost:
			case <-t.C:
			}
			t.Stop()
		}
		select {
		case <-s.lost:
			if ctx.Err() == nil {
				s.blamed = c.blame(s, c.now())
			}
			c.setLastError(fmt.Errorf("connection lost: %w", s.lostErr))
			if s.blamed != nil {
				// afterSession logs the one line that says why
				c.log.Debug("mqtt connection lost", "err", s.lostErr)
			} else {
				c.log.Warn("mqtt connection lost", "err", s.lostErr)
			}
		default:
			s.pc.Disconnect(disconnectQuiesce)
			c.log.Info("mqtt disconnected")
		}
		c.disconnects.Add(1)
	}()

	if err := c.subscribePending(sctx, s); err != nil {
		if ctx.Err() == nil {
			c.setLastError(err)
			lvl := slog.LevelWarn
			if errors.Is(err, ErrNotConnected) {
				lvl = slog.LevelDebug // the connection's end is logged next
			}
			c.log.Log(ctx, lvl, "mqtt resubscribe failed", "err", err)
		}
		return false
	}
	if ob := c.o.Outbox; ob != nil {
		// Not in wg: the drainer can be stuck in paho's Publish for a
		// while after a connection loss; the next connection need not wait.
		c.bg.Add(1)
		go func() {
			defer c.bg.Done()
			if err := c.drain(sctx, s, ob); err != nil {
				giveUp(s, err)
			}
		}()
	}
	if f := c.o.OnConnect; f != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(sctx)
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return true
		case <-s.lost:
			return true
		case err := <-s.fail:
			c.setLastError(err)
			c.log.Warn("mqtt reconnecting: an acknowledgement did not come", "err", err)
			return true
		case <-c.subKick:
			if err := c.subscribePending(sctx, s); err != nil {
				if ctx.Err() == nil {
					c.setLastError(err)
					c.log.Warn("mqtt subscribe failed", "err", err)
				}
				return true
			}
		}
	}
}

// subscribePending subscribes every registered filter this session has not
// subscribed yet (or with another QoS), at most 8 filters per SUBSCRIBE.
// A filter the broker refuses (0x80) is logged and not retried on this
// connection; a transport error ends the session.
func (c *Client) subscribePending(ctx context.Context, s *session) error {
	c.mu.Lock()
	var todo, suspects []subscription
	for _, sub := range c.subs {
		if q, ok := s.subbed[sub.filter]; !ok || q != sub.qos {
			if c.suspectLocked(sub.filter) {
				suspects = append(suspects, sub)
			} else {
				todo = append(todo, sub)
			}
		}
	}
	c.mu.Unlock()
	// Filters the broker closed the connection after go last, one per
	// SUBSCRIBE, so that a close names the filter (attribution.go).
	nBatched := len(todo)
	todo = append(todo, suspects...)
	for len(todo) > 0 {
		n := min(len(todo), maxFiltersPerPacket, max(nBatched, 1))
		nBatched -= n
		batch := make(map[string]byte, n)
		filters := make([]string, 0, n)
		for _, sub := range todo[:n] {
			batch[sub.filter] = sub.qos
			filters = append(filters, sub.filter)
		}
		todo = todo[n:]
		p := c.track(s, kindSubscribe, filters, 0, c.now())
		tok := s.pc.SubscribeMultiple(batch, nil)
		c.sent(s, p, tok)
		if err := c.wait(ctx, s, tok); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		st, _ := tok.(*mqtt.SubscribeToken)
		for f, q := range batch {
			code := q
			if st != nil {
				if r, ok := st.Result()[f]; ok {
					code = r
				}
			}
			if code == 0x80 {
				err := fmt.Errorf("subscribe %s: refused by broker", f)
				c.setLastError(err)
				c.refused(f)
				c.log.Error("mqtt subscription refused: the IoT policy probably denies it", "topic", f)
			} else {
				c.ackedTopic(kindSubscribe, f)
				if _, again := s.subbed[f]; !again {
					s.live.Add(1)
				}
			}
			s.subbed[f] = q // refused filters are not retried until reconnect
		}
		c.mu.Lock()
		c.subsChangedLocked()
		c.mu.Unlock()
	}
	c.subscribedAll()
	return nil
}

// wait waits for a paho token, for at most ackTimeout, while the session
// lives.
func (c *Client) wait(ctx context.Context, s *session, tok mqtt.Token) error {
	select {
	case <-tok.Done(): // a completed token wins over a dead connection
		return tok.Error()
	default:
	}
	t := time.NewTimer(c.ackTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-s.lost:
		return ErrNotConnected
	case <-s.dead:
		return ErrNotConnected
	case <-t.C:
		return fmt.Errorf("%w within %v", ErrNoAck, c.ackTimeout)
	}
}

// drain publishes the outbox in ID order, up to drainBatch in flight, and
// acknowledges each message after its PUBACK. It returns nil when the
// session ends and an error when it wants a reconnect (a PUBACK that never
// came). Whatever is not acknowledged stays queued for the next session.
func (c *Client) drain(ctx context.Context, s *session, ob *outbox.Outbox) error {
	pace := pacer{burst: drainBurst}
	if c.o.DrainRate > 0 {
		pace.interval = time.Second / time.Duration(c.o.DrainRate)
	}
	type inflight struct {
		id    uint64
		topic string
		tok   mqtt.Token
	}
	for {
		if ctx.Err() != nil {
			return nil // never take a Ready meant for the next session's drainer
		}
		msgs, err := ob.Peek(drainBatch)
		if err != nil {
			c.setLastError(err)
			c.log.Error("outbox peek failed", "err", err)
			if c.sleep(ctx, time.Second) != nil {
				return nil
			}
			continue
		}
		if len(msgs) == 0 {
			select {
			case <-ob.Ready():
				continue
			case <-ctx.Done():
				return nil
			}
		}
		var done []uint64
		var pending []inflight
		for _, m := range msgs {
			if err := validatePublish(m.Topic, 1, m.Payload); err != nil {
				// It can never be delivered; keeping it would block the queue.
				c.log.Error("dropping undeliverable outbox message", "id", m.ID, "topic", m.Topic, "err", err)
				done = append(done, m.ID)
				continue
			}
			if d := pace.delay(c.now()); d > 0 && c.sleep(ctx, d) != nil {
				break
			}
			if ctx.Err() != nil || isClosed(s.dead) {
				// paho's Publish on a dying connection can block for its
				// write timeout; stop as soon as the socket has failed.
				break
			}
			p := c.track(s, kindPublish, []string{m.Topic}, m.ID, c.now())
			tok := s.pc.Publish(m.Topic, 1, false, m.Payload)
			c.sent(s, p, tok)
			pending = append(pending, inflight{m.ID, m.Topic, tok})
		}
		var failure error
		for _, p := range pending {
			if err := c.wait(ctx, s, p.tok); err != nil {
				if ctx.Err() == nil {
					c.pubFailures.Add(1)
					if !errors.Is(err, ErrNotConnected) {
						failure = fmt.Errorf("outbox publish %d to %s: %w", p.id, p.topic, err)
					}
				}
				break
			}
			c.publishAcked(kindPublish, p.topic)
			done = append(done, p.id)
		}
		if err := ob.Ack(done...); err != nil {
			// Not fatal: the messages will be sent again (duplicates).
			c.setLastError(err)
			c.log.Error("outbox ack failed", "err", err)
		}
		if failure != nil {
			return failure
		}
		if ctx.Err() != nil {
			return nil
		}
		if isClosed(s.lost) || isClosed(s.dead) {
			return nil
		}
	}
}

// publishAcked counts an acknowledged publish.
func (c *Client) publishAcked(kind, topic string) {
	c.published.Add(1)
	c.lastPubAck.Store(c.now().UnixNano())
	c.ackedTopic(kind, topic)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// watchedConn marks its session dead at the first socket error, before
// paho has noticed: publishing must stop at once (see drain).
type watchedConn struct {
	net.Conn
	s *session
}

func (w *watchedConn) kill() { w.s.deadOnce.Do(func() { close(w.s.dead) }) }

func (w *watchedConn) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	if err != nil {
		w.kill()
	}
	return n, err
}

func (w *watchedConn) Write(b []byte) (int, error) {
	n, err := w.Conn.Write(b)
	if err != nil {
		w.kill()
	}
	return n, err
}

func (w *watchedConn) Close() error {
	w.kill()
	return w.Conn.Close()
}

// dispatch calls the handlers of each incoming message, in order, until
// stop is closed.
func (c *Client) dispatch(inbound <-chan inMsg, stop <-chan struct{}) {
	var hs []Handler
	for {
		select {
		case m := <-inbound:
			hs = hs[:0]
			c.mu.Lock()
			for _, sub := range c.subs {
				if match(sub.filter, m.topic) {
					hs = append(hs, sub.h)
				}
			}
			c.mu.Unlock()
			if len(hs) == 0 {
				c.log.Debug("mqtt message with no handler", "topic", m.topic)
				continue
			}
			for _, h := range hs {
				h(m.topic, m.payload)
			}
			c.delivered.Add(1)
		case <-stop:
			return
		}
	}
}

func (c *Client) setLastError(err error) {
	c.mu.Lock()
	c.lastErr = err.Error()
	c.mu.Unlock()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pacer spaces publishes interval apart, letting up to burst go at once
// after a quiet spell: an alarm right after a telemetry message does not
// wait for its slot, and any second still carries at most
// 1s/interval + burst - 1 (AWS allows 100 publishes a second).
type pacer struct {
	interval time.Duration // 0: no limit
	burst    int
	next     time.Time // the earliest time of the next publish
}

// delay books the next publish at or after now and returns how long to
// wait for it.
func (p *pacer) delay(now time.Time) time.Duration {
	if p.interval <= 0 {
		return 0
	}
	if earliest := now.Add(-time.Duration(p.burst-1) * p.interval); p.next.Before(earliest) {
		p.next = earliest
	}
	d := p.next.Sub(now)
	p.next = p.next.Add(p.interval)
	return max(d, 0)
}
