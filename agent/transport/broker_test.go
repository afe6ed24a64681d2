package transport

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// serverName is the endpoint host the agent verifies; tests dial 127.0.0.1.
const serverName = "iot.test.example"

// testPKI is a CA with a server certificate and a client certificate whose
// key is reachable only through an opaque crypto.Signer.
type testPKI struct {
	roots      *x509.CertPool
	serverCert tls.Certificate
	clientCert tls.Certificate
	signer     *countingSigner
}

// countingSigner hides the concrete key type (as a TPM signer does) and
// counts signatures.
type countingSigner struct {
	key   crypto.Signer
	signs atomic.Int64
}

func (s *countingSigner) Public() crypto.PublicKey { return s.key.Public() }
func (s *countingSigner) Sign(r io.Reader, digest []byte, o crypto.SignerOpts) ([]byte, error) {
	s.signs.Add(1)
	return s.key.Sign(r, digest, o)
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, tmpl *x509.Certificate, pub crypto.PublicKey) []byte {
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvDER := issue(2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: serverName},
		DNSNames:    []string{serverName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, srvKey.Public())
	// An RSA client key, so the signer is certainly not an *ecdsa.PrivateKey.
	cliKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cliDER := issue(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "pi-RPI-0042"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, cliKey.Public())
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	signer := &countingSigner{key: cliKey}
	return &testPKI{
		roots:      roots,
		serverCert: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
		clientCert: tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: signer},
		signer:     signer,
	}
}

// hello is what the server saw of one TLS handshake.
type hello struct {
	serverName string
	offered    []string
	negotiated string
	clientCN   string
}

// serverTLS requires and verifies client certificates and offers ALPN the
// way AWS IoT Core does on port 443.
func (p *testPKI) serverTLS(hellos chan<- hello) *tls.Config {
	var mu sync.Mutex
	pending := map[string]hello{} // by remote address
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.roots,
		NextProtos:   []string{"x-amzn-mqtt-ca", "mqtt", "x-amzn-http-ca", "http/1.1"},
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			mu.Lock()
			pending[chi.Conn.RemoteAddr().String()] = hello{serverName: chi.ServerName, offered: chi.SupportedProtos}
			mu.Unlock()
			return nil, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			// RemoteAddr is not in ConnectionState: match the only pending
			// hello with this SNI (tests run one client per broker).
			mu.Lock()
			var h hello
			for k, v := range pending {
				if v.serverName == cs.ServerName {
					h = v
					delete(pending, k)
					break
				}
			}
			mu.Unlock()
			h.negotiated = cs.NegotiatedProtocol
			if len(cs.PeerCertificates) > 0 {
				h.clientCN = cs.PeerCertificates[0].Subject.CommonName
			}
			select {
			case hellos <- h:
			default:
			}
			return nil
		},
	}
}

// broker is a mochi-mqtt server on a TLS listener, with hooks that report
// what it saw on channels.
type broker struct {
	srv    *mochi.Server
	addr   string
	hook   *recHook
	hellos chan hello
	ln     *trackedListener

	stopOnce sync.Once
}

// recHook allows everyone and records subscriptions and publishes.
type recHook struct {
	mochi.HookBase
	subscribed chan []string
	published  chan packets.Packet
	// readFilter, when set, is called for every packet read; an error
	// closes the client's connection.
	readFilter func(pk packets.Packet) error
}

func (h *recHook) ID() string { return "rec" }
func (h *recHook) Provides(b byte) bool {
	switch b {
	case mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnSubscribed, mochi.OnPublished, mochi.OnPacketRead:
		return true
	}
	return false
}
func (h *recHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (h *recHook) OnACLCheck(*mochi.Client, string, bool) bool              { return true }
func (h *recHook) OnSubscribed(_ *mochi.Client, pk packets.Packet, _ []byte) {
	var fs []string
	for _, f := range pk.Filters {
		fs = append(fs, f.Filter)
	}
	h.subscribed <- fs
}
func (h *recHook) OnPublished(cl *mochi.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.published <- pk
}
func (h *recHook) OnPacketRead(_ *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if h.readFilter != nil {
		if err := h.readFilter(pk); err != nil {
			return pk, err
		}
	}
	return pk, nil
}

// startBroker listens on addr ("127.0.0.1:0" for a fresh port) and stops on
// test cleanup (stop is idempotent).
func startBroker(t *testing.T, p *testPKI, addr string, hook *recHook) *broker {
	t.Helper()
	var ln net.Listener
	var err error
	// The port of a broker that just stopped may take a moment to be free.
	for deadline := time.Now().Add(5 * time.Second); ; {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // bounded poll for the port, not synchronisation
	}
	if err != nil {
		t.Fatal(err)
	}
	if hook == nil {
		hook = &recHook{}
	}
	if hook.subscribed == nil {
		hook.subscribed = make(chan []string, 100)
	}
	if hook.published == nil {
		hook.published = make(chan packets.Packet, 10000)
	}
	hellos := make(chan hello, 100)
	tln := tls.NewListener(ln, p.serverTLS(hellos))
	srv := mochi.New(&mochi.Options{
		InlineClient: true,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	tl := &trackedListener{ln: tln, conns: map[net.Conn]bool{}}
	tl.idle = sync.NewCond(&tl.mu)
	if err := srv.AddListener(tl); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	b := &broker{srv: srv, addr: ln.Addr().String(), hook: hook, hellos: hellos, ln: tl}
	t.Cleanup(b.stop)
	return b
}

func (b *broker) stop() {
	b.stopOnce.Do(func() {
		b.ln.drain()
		_ = b.srv.Close()
	})
}

// trackedListener is a mochi listener that knows which connections mochi
// is serving. mochi v2.7.9's Server.Close races (under -race) with an
// EstablishConnection that has just begun for a connection accepted a
// moment before; stop first drains the listener, so that Close finds
// nothing in flight.
type trackedListener struct {
	ln net.Listener

	mu       sync.Mutex
	idle     *sync.Cond // signalled when serving drops
	serving  int        // the accept loop and each EstablishConnection
	conns    map[net.Conn]bool
	draining bool
}

func (l *trackedListener) ID() string              { return "tls" }
func (l *trackedListener) Address() string         { return l.ln.Addr().String() }
func (l *trackedListener) Protocol() string        { return "tcp" }
func (l *trackedListener) Init(*slog.Logger) error { return nil }
func (l *trackedListener) Close(closeClients listeners.CloseFn) {
	_ = l.ln.Close()
	closeClients(l.ID())
}

// Serve accepts until the listener is closed; each connection is counted
// before its goroutine starts, so drain cannot miss one.
func (l *trackedListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	l.serving++
	l.mu.Unlock()
	defer l.done(nil)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.draining {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.serving++
		l.conns[c] = true
		l.mu.Unlock()
		go func() {
			defer l.done(c)
			_ = establish(l.ID(), c)
		}()
	}
}

func (l *trackedListener) done(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
	l.serving--
	l.idle.Broadcast()
}

// drain stops accepting, closes every connection and waits until mochi is
// done with all of them and the accept loop has ended.
func (l *trackedListener) drain() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.draining = true
	_ = l.ln.Close()
	for c := range l.conns {
		c.Close()
	}
	for l.serving > 0 {
		l.idle.Wait()
	}
}

// recv waits for a value on ch, failing the test after a generous deadline.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// newTestClient returns a client for b with fast backoff and no CONNECT
// spacing, plus options tweaks.
func newTestClient(t *testing.T, p *testPKI, addr string, tweak func(*Options)) *Client {
	t.Helper()
	o := Options{
		Broker:      addr,
		ServerName:  serverName,
		RootCAs:     p.roots,
		Certificate: p.clientCert,
		ClientID:    "pi-RPI-0042",
		BackoffMin:  time.Millisecond,
		BackoffMax:  20 * time.Millisecond,
		DrainRate:   -1,
	}
	if tweak != nil {
		tweak(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	c.minConnectGap = 0
	return c
}

// runClient starts c.Run and returns a stop function that cancels it,
// waits for Run to return nil, and checks that no goroutine is left.
func runClient(t *testing.T, c *Client) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := recv(t, errc, "Run to return"); err != nil {
				t.Errorf("Run: %v", err)
			}
			checkNoLeak(t)
		})
	}
	t.Cleanup(stop)
	return stop
}

// checkNoLeak waits (bounded) until no goroutine of this package's Client
// or of paho is left.
func checkNoLeak(t *testing.T) {
	t.Helper()
	var leaked []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); runtime.Gosched() {
		leaked = leaked[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "eclipse/paho.mqtt.golang") || strings.Contains(g, "transport.(*Client)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond) // bounded poll for exiting goroutines, not synchronisation
	}
	t.Errorf("%d goroutines left after Run returned:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
}

// testLogger writes to the test log (shown on failure or with -v).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
