package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// handshakeTimeout bounds the TLS handshake and the wait for CONNECT.
const handshakeTimeout = 10 * time.Second

// ALPN protocol names AWS IoT Core accepts on port 443. A Go server that
// sets NextProtos aborts handshakes whose offer overlaps none of them, so
// all are listed and the negotiated one is checked after the handshake.
const (
	ALPNMQTTCert = "x-amzn-mqtt-ca"
	ALPNMQTT     = "mqtt"
	ALPNHTTPCert = "x-amzn-http-ca"
	ALPNHTTP     = "http/1.1"
)

// tlsListener is a mochi listener that does the TLS handshake itself so that
// it can check ALPN before MQTT starts, and tracks every connection so that
// Close ends them all.
type tlsListener struct {
	id, addr string
	cfg      *tls.Config
	log      *slog.Logger

	// stats counts failed accepts (see Serve); errLog rate-limits their
	// log records.
	stats  *counters
	errLog sampler
	// ended, if set, is called with each connection handed to mochi once
	// mochi is done with it.
	ended func(net.Conn)
	// wrap, if set, wraps each connection before mochi gets it.
	wrap func(*tls.Conn) net.Conn
	// closeClients, if set, replaces the CloseFn mochi passes to Close.
	closeClients func(listenerID string)

	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	end    atomic.Bool
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

var _ listeners.Listener = (*tlsListener)(nil)

func newTLSListener(id, addr string, cfg *tls.Config, log *slog.Logger, stats *counters) *tlsListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &tlsListener{id: id, addr: addr, cfg: cfg, log: log, stats: stats,
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
}

func (l *tlsListener) ID() string       { return l.id }
func (l *tlsListener) Protocol() string { return "mqtts" }

func (l *tlsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *tlsListener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.ln = ln
	return nil
}

// Accept errors that are not the listener's own closing (EMFILE when the
// process runs out of file descriptors, ENFILE, ENOBUFS, ...) are retried
// after a pause that starts at minAcceptBackoff and doubles up to
// maxAcceptBackoff, as net/http's Server does; a successful accept resets it.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

func (l *tlsListener) Serve(establish listeners.EstablishFn) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if delay == 0 {
				delay = minAcceptBackoff
			} else {
				delay = min(2*delay, maxAcceptBackoff)
			}
			l.stats.acceptErrors.Add(1)
			if ok, suppressed := l.errLog.allow(time.Now()); ok {
				l.log.Error("mqtt accept failed; retrying", "listener", l.id, "err", err, "retry_in", delay, "suppressed", suppressed)
			} else {
				l.stats.suppressed.Add(1)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		if !l.track(c) {
			_ = c.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.untrack(c)
			l.serveConn(c, establish)
		}()
	}
}

func (l *tlsListener) serveConn(c net.Conn, establish listeners.EstablishFn) {
	tc := tls.Server(c, l.cfg)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(l.ctx); err != nil {
		l.log.Debug("tls handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		_ = tc.Close()
		return
	}
	cs := tc.ConnectionState()
	switch cs.NegotiatedProtocol {
	case "", ALPNMQTTCert:
	default:
		// Custom-authorizer MQTT, HTTPS and WebSocket are not served yet.
		l.log.Debug("alpn protocol not served", "remote", c.RemoteAddr().String(), "alpn", cs.NegotiatedProtocol)
		_ = tc.Close()
		return
	}
	// The handshake deadline stays until CONNECT is read; mochi then sets the
	// keep-alive deadline.
	var nc net.Conn = tc
	if l.wrap != nil {
		nc = l.wrap(tc)
	}
	if err := establish(l.id, nc); err != nil {
		l.log.Debug("connection ended", "remote", c.RemoteAddr().String(), "err", err)
	}
	if l.ended != nil {
		l.ended(nc)
	}
}

func (l *tlsListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.end.Load() {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *tlsListener) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// Close stops accepting, lets mochi disconnect its clients, then closes every
// connection still open (handshakes, CONNECTs not yet read).
func (l *tlsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	already := l.end.Swap(true)
	l.mu.Unlock()
	if already {
		return
	}
	if l.closeClients != nil {
		closeClients = l.closeClients // the broker's, without mochi's deadlock
	}
	closeClients(l.id)
	l.cancel()
	if l.ln != nil {
		_ = l.ln.Close()
	}
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
}

// wait blocks until every connection goroutine has returned.
func (l *tlsListener) wait() { l.wg.Wait() }
