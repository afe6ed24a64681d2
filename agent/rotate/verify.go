package rotate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrRefused: the broker closed the connection without CONNACK, or
// answered CONNACK with a non-zero return code.
var ErrRefused = errors.New("rotate: connection refused")

// DialOptions say where and how Verify connects.
type DialOptions struct {
	Addr       string         // host:port of the MQTT endpoint
	ServerName string         // TLS server name (SNI); required for an IP address
	RootCAs    *x509.CertPool // nil: the system roots
	ALPN       bool           // offer x-amzn-mqtt-ca (port 443)
	ClientID   string         // the thing name
	Timeout    time.Duration  // the whole exchange; default 15 s
}

// DialVerifier returns a Verifier that makes one MQTT 3.1.1 connection with
// the new certificate: CONNECT (CleanSession=0, so the persistent session
// survives the takeover), CONNACK 0, DISCONNECT. The running connection
// with the same client id is dropped by the broker when this one is
// accepted.
func DialVerifier(o DialOptions) Verifier {
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	return func(ctx context.Context, cert tls.Certificate) error {
		ctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		// AWS IoT accepts one CONNECT a second per client id and closes a
		// faster one without CONNACK; the agent's own connection with this
		// client id was made moments ago. So a CONNECT closed unanswered
		// is tried again after the throttle's second, while time is left.
		for attempt := 1; ; attempt++ {
			err := verifyOnce(ctx, o, cert)
			if !errors.Is(err, errNoConnack) || attempt == verifyAttempts {
				return err
			}
			t := time.NewTimer(throttleWait)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
	}
}

// A CONNECT refused without CONNACK is tried verifyAttempts times in all,
// throttleWait apart (AWS IoT: one CONNECT per second per client id).
const (
	verifyAttempts = 3
	throttleWait   = 1100 * time.Millisecond
)

// errNoConnack: the broker closed the connection without a CONNACK (a
// throttled CONNECT, or a refused certificate).
var errNoConnack = errors.New("no CONNACK")

// verifyOnce makes one CONNECT, CONNACK, DISCONNECT exchange.
func verifyOnce(ctx context.Context, o DialOptions, cert tls.Certificate) error {
	cfg := &tls.Config{
		ServerName:   o.ServerName,
		RootCAs:      o.RootCAs,
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	if o.ALPN {
		cfg.NextProtos = []string{"x-amzn-mqtt-ca"}
	}
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("verify: dial %s: %w", o.Addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write(connectPacket(o.ClientID, 60)); err != nil {
		return fmt.Errorf("verify: CONNECT: %w", err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return fmt.Errorf("verify: %w: %w: %w", ErrRefused, errNoConnack, err)
	}
	if ack[0] != 0x20 || ack[1] != 0x02 {
		return fmt.Errorf("verify: %w: not a CONNACK: % x", ErrRefused, ack)
	}
	if ack[3] != 0 {
		return fmt.Errorf("verify: %w: CONNACK return code %d", ErrRefused, ack[3])
	}
	_, _ = c.Write([]byte{0xe0, 0x00}) // DISCONNECT
	return nil
}

// connectPacket is an MQTT 3.1.1 CONNECT with CleanSession=0.
func connectPacket(clientID string, keepAlive uint16) []byte {
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, byte(keepAlive >> 8), byte(keepAlive)}
	payload := append([]byte{byte(len(clientID) >> 8), byte(len(clientID))}, clientID...)
	rem := len(vh) + len(payload)
	out := []byte{0x10}
	for {
		b := byte(rem % 128)
		rem /= 128
		if rem > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if rem == 0 {
			break
		}
	}
	return append(append(out, vh...), payload...)
}
