package broker

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/store"
)

const waitFor = 10 * time.Second

// env is a CA, a registry and a running broker.
type env struct {
	t   testing.TB
	ca  *pki.CA
	reg *registry.Registry
	b   *Broker
}

var (
	pkiOnce    sync.Once
	sharedCA   *pki.CA
	serverCert []tls.Certificate
	pkiErr     error
)

// testPKI creates one CA and server certificates for the whole test binary
// (RSA key generation is slow under -race).
func testPKI(t testing.TB) (*pki.CA, []tls.Certificate) {
	t.Helper()
	pkiOnce.Do(func() {
		// Files go to the first caller's TempDir; the CA lives on in memory.
		dir := t.TempDir()
		sharedCA, pkiErr = pki.LoadOrCreateCA(dir)
		if pkiErr != nil {
			return
		}
		serverCert, pkiErr = sharedCA.ServerCertificates(dir, []string{"127.0.0.1", "::1", "localhost"})
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return sharedCA, serverCert
}

func newEnv(t testing.TB, authz Authorizer, addrs ...string) *env {
	t.Helper()
	return newEnvWith(t, func(o *Options) { o.Authorizer = authz }, addrs...)
}

func newEnvWith(t testing.TB, mod func(*Options), addrs ...string) *env {
	t.Helper()
	ca, certs := testPKI(t)
	db, err := store.Open(filepath.Join(t.TempDir(), "sim.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg := registry.New(db, "eu-central-1", "123456789012", nil)
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:0"}
	}
	// Tests reconnect client ids faster than AWS's one CONNECT per second;
	// the tests of that limit set it back.
	o := Options{Addrs: addrs, Certificates: certs, ClientCAs: ca.Pool(), Registry: reg, ConnectInterval: -1}
	if mod != nil {
		mod(&o)
	}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return &env{t: t, ca: ca, reg: reg, b: b}
}

// device registers a thing and an ACTIVE certificate attached to it.
func (e *env) device(thing string) (tls.Certificate, string) {
	e.t.Helper()
	cert, id := e.cert(registry.StatusActive)
	if _, err := e.reg.CreateThing(thing, "", nil); err != nil {
		e.t.Fatal(err)
	}
	if err := e.reg.AttachThingPrincipal(thing, id); err != nil {
		e.t.Fatal(err)
	}
	return cert, id
}

// cert issues a certificate from the test CA and registers it with status
// (no registration when status is "").
func (e *env) cert(status string) (tls.Certificate, string) {
	e.t.Helper()
	certPEM, keyPEM, err := e.ca.NewKeysAndCertificate("dev")
	if err != nil {
		e.t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		e.t.Fatal(err)
	}
	id := pki.CertificateID(pair.Leaf.Raw)
	if status != "" {
		if _, err := e.reg.RegisterCertificate(certPEM, status); err != nil {
			e.t.Fatal(err)
		}
	}
	return pair, id
}

func (e *env) tlsConfig(cert *tls.Certificate, alpn ...string) *tls.Config {
	cfg := &tls.Config{RootCAs: e.ca.Pool(), ServerName: "localhost", NextProtos: alpn, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// pahoClient is a connected paho client with its received messages and a
// connection-lost signal.
type pahoClient struct {
	paho.Client
	msgs chan paho.Message
	lost chan error
}

func (e *env) paho(addr string, cert tls.Certificate, clientID string, alpn ...string) (*pahoClient, error) {
	pc := &pahoClient{msgs: make(chan paho.Message, 100), lost: make(chan error, 1)}
	o := paho.NewClientOptions().
		AddBroker("ssl://" + addr).
		SetClientID(clientID).
		SetTLSConfig(e.tlsConfig(&cert, alpn...)).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(waitFor).
		SetKeepAlive(60 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { pc.msgs <- m }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { pc.lost <- err })
	pc.Client = paho.NewClient(o)
	tok := pc.Connect()
	if !tok.WaitTimeout(waitFor) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { pc.Disconnect(0) })
	return pc, nil
}

func (e *env) mustPaho(cert tls.Certificate, clientID string) *pahoClient {
	e.t.Helper()
	pc, err := e.paho(e.b.Addrs()[0], cert, clientID)
	if err != nil {
		e.t.Fatalf("connect %s: %v", clientID, err)
	}
	return pc
}

func wait(t testing.TB, tok paho.Token) error {
	t.Helper()
	if !tok.WaitTimeout(waitFor) {
		t.Fatal("paho token timed out")
	}
	return tok.Error()
}

func (pc *pahoClient) next(t testing.TB) paho.Message {
	t.Helper()
	select {
	case m := <-pc.msgs:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message received")
		return nil
	}
}

func (pc *pahoClient) waitLost(t testing.TB) {
	t.Helper()
	select {
	case <-pc.lost:
	case <-time.After(waitFor):
		t.Fatal("connection was not closed")
	}
}

// rawClient speaks MQTT over TLS with mochi's packet codec, so tests can
// send what paho would refuse and see exactly what the broker answers.
type rawClient struct {
	t       testing.TB
	conn    *tls.Conn
	r       *bufio.Reader
	version byte
	nextID  uint16
}

func (e *env) dialRaw(addr string, cert *tls.Certificate, version byte, alpn ...string) (*rawClient, error) {
	conn, err := tls.Dial("tcp", addr, e.tlsConfig(cert, alpn...))
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(waitFor))
	return &rawClient{t: e.t, conn: conn, r: bufio.NewReader(conn), version: version}, nil
}

func (c *rawClient) send(pk packets.Packet) error {
	pk.ProtocolVersion = c.version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	default:
		err = fmt.Errorf("cannot encode %d", pk.FixedHeader.Type)
	}
	if err != nil {
		return err
	}
	_, err = c.conn.Write(buf.Bytes())
	return err
}

// read returns the next packet, or an error (io.EOF when the broker closed
// the connection).
func (c *rawClient) read() (packets.Packet, error) {
	var pk packets.Packet
	b, err := c.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = c.version
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	return pk, err
}

func connectPacket(clientID string, version byte, keepalive uint16) packets.Packet {
	name := []byte("MQTT")
	if version == 3 {
		name = []byte("MQIsdp")
	}
	return packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect: packets.ConnectParams{
			ProtocolName:     name,
			ClientIdentifier: clientID,
			Clean:            true,
			Keepalive:        keepalive,
		},
	}
}

// connect sends CONNECT and returns the CONNACK, or an error if the broker
// closed the connection without one.
func (c *rawClient) connect(pk packets.Packet) (packets.Packet, error) {
	if err := c.send(pk); err != nil {
		return packets.Packet{}, err
	}
	ack, err := c.read()
	if err != nil {
		return ack, err
	}
	if ack.FixedHeader.Type != packets.Connack {
		return ack, fmt.Errorf("got packet type %d, want CONNACK", ack.FixedHeader.Type)
	}
	return ack, nil
}

func (e *env) rawConnected(cert tls.Certificate, clientID string) *rawClient {
	e.t.Helper()
	c, err := e.dialRaw(e.b.Addrs()[0], &cert, 4)
	if err != nil {
		e.t.Fatal(err)
	}
	ack, err := c.connect(connectPacket(clientID, 4, 60))
	if err != nil || ack.ReasonCode != 0 {
		e.t.Fatalf("connect %s: code %d, %v", clientID, ack.ReasonCode, err)
	}
	return c
}

func (c *rawClient) publish(topic string, payload []byte, qos byte, retain bool) error {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		TopicName:   topic,
		Payload:     payload,
	}
	if qos > 0 {
		c.nextID++
		pk.PacketID = c.nextID
	}
	return c.send(pk)
}

// subscribe sends SUBSCRIBE and returns the SUBACK codes (or the error
// that closed the connection). Publishes that arrive first are skipped.
func (c *rawClient) subscribe(qos byte, filters ...string) ([]byte, error) {
	c.nextID++
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: c.nextID}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: qos})
	}
	if err := c.send(pk); err != nil {
		return nil, err
	}
	for {
		got, err := c.read()
		if err != nil {
			return nil, err
		}
		if got.FixedHeader.Type == packets.Suback {
			return got.ReasonCodes, nil
		}
	}
}

// nextPublish returns the next PUBLISH, skipping acks.
func (c *rawClient) nextPublish() (packets.Packet, error) {
	for {
		pk, err := c.read()
		if err != nil {
			return pk, err
		}
		if pk.FixedHeader.Type == packets.Publish {
			return pk, nil
		}
	}
}

// closedByBroker reads until the broker closes the connection, failing if
// that does not happen in time. It returns the packets read first.
func (c *rawClient) closedByBroker() []packets.Packet {
	c.t.Helper()
	var seen []packets.Packet
	for {
		pk, err := c.read()
		if err == nil {
			seen = append(seen, pk)
			continue
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("connection not closed by the broker")
		}
		return seen
	}
}

// allowAll is an authorizer for tests of the limits alone.
type allowAll struct{}

func (allowAll) Connect(*Principal) error              { return nil }
func (allowAll) Publish(*Principal, string, bool) bool { return true }
func (allowAll) Subscribe(*Principal, string) bool     { return true }
func (allowAll) Receive(*Principal, string) bool       { return true }

var timeZero time.Time

// logBuffer collects log output for tests; safe for concurrent writers.
type logBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	n       int64
	msgs    map[string]int // records holding each string (see records)
	longest map[string]int
}

// records returns how many records written so far hold msg, and the
// longest one's length; the count starts with the first call for msg, so
// call it once before the writes too.
func (l *logBuffer) records(msg string) (n, longest int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msgs == nil {
		l.msgs, l.longest = map[string]int{}, map[string]int{}
	}
	if _, ok := l.msgs[msg]; !ok {
		l.msgs[msg] = 0
	}
	return l.msgs[msg], l.longest[msg]
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n += int64(len(p))
	// slog writes one record per call: count them all, kept or not.
	for msg, n := range l.msgs {
		if bytes.Contains(p, []byte(msg)) {
			l.msgs[msg] = n + 1
			l.longest[msg] = max(l.longest[msg], len(p)-1)
		}
	}
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

// String returns the first MiB written.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Len returns how many bytes were written in all.
func (l *logBuffer) Len() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}
