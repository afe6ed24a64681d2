package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// mclient is one hand-made MQTT 3.1.1 connection over mutual TLS, used by
// one goroutine at a time: requests go out with publish, answers are read
// synchronously with await.
type mclient struct {
	conn   *tls.Conn
	r      *bufio.Reader
	nextID uint16
}

// errSubscribeRefused: the broker answered a SUBSCRIBE with 0x80.
var errSubscribeRefused = errors.New("subscription refused")

// dialMQTT opens a TLS connection with cert to addr and sends CONNECT
// (clean session) as clientID; it returns once CONNACK accepted it.
func dialMQTT(ctx context.Context, addr string, pool *x509.CertPool, cert tls.Certificate, clientID string, keepalive uint16) (*mclient, error) {
	dl := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
	}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := c.(*tls.Conn)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(connectPacket(clientID, keepalive)); err != nil {
		conn.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 4096)
	typ, _, body, err := readPacket(r)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("no CONNACK: %w", err)
	}
	code, err := connackCode(typ, body)
	if err != nil || code != 0 {
		conn.Close()
		return nil, fmt.Errorf("CONNACK code %d: %v", code, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return &mclient{conn: conn, r: r}, nil
}

func (c *mclient) id() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// subscribe subscribes to filters at QoS 1 and waits for the SUBACK.
// PUBLISHes that arrive meanwhile are acknowledged and dropped.
func (c *mclient) subscribe(limit time.Duration, filters ...string) error {
	id := c.id()
	_ = c.conn.SetDeadline(time.Now().Add(limit))
	defer c.conn.SetDeadline(time.Time{})
	if _, err := c.conn.Write(subscribePacket(id, filters...)); err != nil {
		return err
	}
	for {
		typ, flags, body, err := readPacket(c.r)
		if err != nil {
			return fmt.Errorf("no SUBACK: %w", err)
		}
		switch typ {
		case pktPublish:
			if err := c.ackPublish(flags, body); err != nil {
				return err
			}
			continue
		case pktSuback:
		default:
			continue
		}
		codes, err := subackCodes(typ, body, id)
		if err != nil {
			return err
		}
		for i, code := range codes {
			if code == 0x80 && i < len(filters) {
				return fmt.Errorf("%s: %w", filters[i], errSubscribeRefused)
			}
		}
		return nil
	}
}

// publish sends a PUBLISH at QoS 0 (qos1 false) or 1; a PUBACK is not
// waited for (await skips it).
func (c *mclient) publish(topic string, payload []byte, qos1 bool) error {
	var b []byte
	if qos1 {
		b = publishPacket(topic, c.id(), payload)
	} else {
		b = appendRemLen([]byte{pktPublish << 4}, 2+len(topic)+len(payload))
		b = appendStr(b, topic)
		b = append(b, payload...)
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.conn.Write(b)
	return err
}

func (c *mclient) ackPublish(flags byte, body []byte) error {
	_, id, _, err := parsePublish(flags, body)
	if err != nil || id == 0 {
		return err
	}
	_, err = c.conn.Write(pubackPacket(id))
	return err
}

// await reads packets until a PUBLISH whose topic ok accepts (nil: any)
// arrives before deadline, acknowledging QoS 1 ones; other packets are
// skipped.
func (c *mclient) await(deadline time.Time, ok func(topic string) bool) (string, []byte, error) {
	_ = c.conn.SetReadDeadline(deadline)
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		typ, flags, body, err := readPacket(c.r)
		if err != nil {
			return "", nil, err
		}
		if typ != pktPublish {
			continue
		}
		topic, id, payload, err := parsePublish(flags, body)
		if err != nil {
			return "", nil, err
		}
		if id != 0 {
			_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.conn.Write(pubackPacket(id)); err != nil {
				return "", nil, err
			}
		}
		if ok == nil || ok(topic) {
			return topic, payload, nil
		}
	}
}

// close sends DISCONNECT and closes the connection.
func (c *mclient) close() {
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.conn.Write(disconnectPacket())
	c.conn.Close()
}
