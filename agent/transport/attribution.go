package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/agent/outbox"
)

// Why a connection closed. AWS IoT Core answers a PUBLISH or SUBSCRIBE that
// the IoT policy denies by closing the connection (MQTT 3.1.1 has no
// reason code for it): the client sees EOF and nothing else. The transport
// remembers every PUBLISH and SUBSCRIBE it sent until it is acknowledged,
// and when the broker closes the connection it blames the oldest packet
// sent shortly before that was never acknowledged: the broker handles a
// connection's packets in order, so everything before that one was
// answered and everything after it was never read.
//
// Blame has consequences:
//   - the likely cause is recorded (Stats.Diagnosis, the log);
//   - the next attempt waits on a longer, growing backoff (AuthBackoffMin,
//     doubling to AuthBackoffMax) instead of reconnecting at once into the
//     same refusal;
//   - a SUBSCRIBE of several filters is split: its filters are subscribed
//     one per packet from then on, so the next close names the filter;
//   - an outbox message blamed QuarantineAfter times in a row goes to the
//     outbox's quarantine, so that the rest of the queue flows.

const (
	// attributionWindow: a close later than this after a packet was sent
	// is not blamed on it.
	attributionWindow = 10 * time.Second
	// lostWait bounds the wait for paho to finish with a dead connection
	// (every acknowledgement read before the close is then processed).
	lostWait = 2 * time.Second
	// maxTracked bounds the packets remembered per connection.
	maxTracked                 = 256
	defaultAuthBackoffMin      = 5 * time.Second
	defaultAuthBackoffMax      = 10 * time.Minute
	defaultQuarantineAfter     = 3
	kindPublish, kindSubscribe = "publish", "subscribe"
)

// sentPkt is a PUBLISH or SUBSCRIBE waiting for its acknowledgement.
type sentPkt struct {
	kind     string
	topics   []string // the topic, or the SUBSCRIBE's filters
	outboxID uint64   // 0 unless an outbox message
	tok      mqtt.Token
	at       time.Time
}

func (p *sentPkt) key() string {
	return fmt.Sprintf("%s %d %s", p.kind, p.outboxID, strings.Join(p.topics, " "))
}

// what names the packet for people.
func (p *sentPkt) what() string {
	switch {
	case len(p.topics) == 1:
		return p.kind + " to " + p.topics[0]
	case p.kind == kindSubscribe:
		return "subscribe to one of " + strings.Join(p.topics, ", ")
	}
	return p.kind + " to " + strings.Join(p.topics, ", ")
}

func acked(tok mqtt.Token) bool {
	if tok == nil { // still being handed to paho
		return false
	}
	select {
	case <-tok.Done():
		return tok.Error() == nil
	default:
		return false
	}
}

// track remembers a packet about to be sent on s, before paho has it:
// the drainer is not waited for when a connection ends (paho's Publish can
// block), so a packet registered only after Publish returned could miss
// the blame for the close it caused. sent gives it its token.
func (c *Client) track(s *session, kind string, topics []string, outboxID uint64, at time.Time) *sentPkt {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	if len(s.sent) >= maxTracked/2 {
		keep := s.sent[:0]
		for _, p := range s.sent {
			if !acked(p.tok) {
				keep = append(keep, p)
			}
		}
		clear(s.sent[len(keep):])
		s.sent = keep
		if len(s.sent) >= maxTracked {
			s.sent = append(s.sent[:0], s.sent[1:]...)
		}
	}
	p := &sentPkt{kind: kind, topics: topics, outboxID: outboxID, at: at}
	s.sent = append(s.sent, p)
	return p
}

// sent records the token paho returned for a tracked packet.
func (c *Client) sent(s *session, p *sentPkt, tok mqtt.Token) {
	s.sentMu.Lock()
	p.tok = tok
	s.sentMu.Unlock()
}

// closedByBroker reports whether a connection-lost error is the peer
// closing the connection, rather than a network failure: EOF on a read,
// or a reset or broken pipe on a write that came after the peer's close
// (paho may be writing the next packet when the broker closes after one).
func closedByBroker(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// blame returns the packet a broker's close of s is attributed to, or nil.
// Call it after s.lost is closed.
func (c *Client) blame(s *session, closedAt time.Time) *sentPkt {
	if !closedByBroker(s.lostErr) {
		return nil
	}
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	for _, p := range s.sent {
		if acked(p.tok) || closedAt.Sub(p.at) > attributionWindow {
			continue
		}
		cp := *p
		return &cp
	}
	return nil
}

// Diagnosis is the likely cause of the broker closing the connection (or
// refusing a subscription), as recorded by the transport.
type Diagnosis struct {
	Text     string    // "the IoT policy probably denies subscribe to ..."
	Kind     string    // "publish" or "subscribe"
	Topic    string    // the topic or filter (several, comma-separated, until narrowed down)
	OutboxID uint64    // the outbox message, for a publish from the outbox
	InARow   int       // connections closed after this same packet in a row
	At       time.Time // the last time

	closed bool // from a close (not a SUBACK refusal)
}

// authState is what the client keeps across connections about closes the
// broker made after a packet; guarded by Client.mu.
type authState struct {
	diag      *Diagnosis
	lastKey   string          // the key of the last blamed packet
	inARow    int             // consecutive connections closed after it
	fails     int             // consecutive blamed closes, any packet: drives the backoff
	suspects  map[string]bool // filters of a multi-filter SUBSCRIBE that was blamed
	next      time.Time       // when the next connection attempt is due (zero: now or connected)
	quarantin uint64          // messages quarantined in this run
}

// afterSession decides, after a session ended, whether its close is
// blamed on a packet; it records the diagnosis, quarantines a poison
// blameRun is how many connections in a row the broker closed right after
// the same packet (0: the last close was not blamed on one).
func (c *Client) blameRun() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.auth.inARow
}

// outbox message and returns the backoff to use (ok false: the usual one).
func (c *Client) afterSession(s *session) (d time.Duration, ok bool) {
	p := s.blamed
	c.mu.Lock()
	if p == nil {
		c.auth.fails, c.auth.inARow, c.auth.lastKey = 0, 0, ""
		c.mu.Unlock()
		return 0, false
	}
	if k := p.key(); k == c.auth.lastKey {
		c.auth.inARow++
	} else {
		c.auth.lastKey, c.auth.inARow = k, 1
	}
	c.auth.fails++
	if p.kind == kindSubscribe && len(p.topics) > 1 {
		if c.auth.suspects == nil {
			c.auth.suspects = map[string]bool{}
		}
		for _, f := range p.topics {
			c.auth.suspects[f] = true
		}
	}
	text := "the broker closed the connection right after a " + p.what() + ": the IoT policy probably denies it"
	if p.kind == kindSubscribe && len(p.topics) > 1 {
		text += " (the next connection subscribes them one at a time to tell which)"
	}
	dg := &Diagnosis{Text: text, Kind: p.kind, Topic: strings.Join(p.topics, ", "), OutboxID: p.outboxID, InARow: c.auth.inARow, At: c.now(), closed: true}
	c.auth.diag = dg
	c.lastErr = text
	inARow, fails := c.auth.inARow, c.auth.fails
	c.mu.Unlock()

	ob := c.o.Outbox
	if p.outboxID != 0 && ob != nil && inARow >= c.o.QuarantineAfter {
		reason := fmt.Sprintf("the broker closed the connection right after its PUBLISH %d times in a row (the IoT policy probably denies publish to %s)", inARow, p.topics[0])
		m, err := ob.Quarantine(p.outboxID, reason)
		switch {
		case errors.Is(err, outbox.ErrNotFound):
			// acknowledged or purged meanwhile
		case err != nil:
			c.setLastError(err)
			c.log.Error("outbox quarantine failed", "id", p.outboxID, "topic", p.topics[0], "err", err)
		default:
			c.log.Warn("outbox message quarantined: the rest of the queue goes on; see iotagent outbox list --quarantine",
				"id", m.ID, "topic", m.Topic, "class", m.Class.String(), "closes_in_a_row", inARow)
			c.mu.Lock()
			c.auth.quarantin++
			c.auth.diag, c.auth.fails, c.auth.inARow, c.auth.lastKey = nil, 0, 0, ""
			c.lastErr = fmt.Sprintf("outbox message %d to %s quarantined: %s", m.ID, m.Topic, reason)
			c.mu.Unlock()
			if f := c.o.OnQuarantine; f != nil {
				f(m, reason)
			}
			return 0, false // the cause is gone: reconnect as usual
		}
	}
	d = c.authDelay(fails)
	c.log.Warn("mqtt connection closed by the broker after a "+p.kind+"; backing off",
		"topic", dg.Topic, "likely_cause", "IoT policy denies "+p.what(), "in_a_row", inARow, "retry_in", d)
	return d, true
}

// authDelay is the backoff after the n-th blamed close in a row (n >= 1):
// AuthBackoffMin doubling up to AuthBackoffMax, with "equal jitter" (at
// least half of it), so that it never collapses to an immediate retry.
func (c *Client) authDelay(n int) time.Duration {
	d := c.o.AuthBackoffMax
	if n-1 < 62 {
		if v := c.o.AuthBackoffMin << (n - 1); v > 0 && v < d && v>>(n-1) == c.o.AuthBackoffMin {
			d = v
		}
	}
	half := d / 2
	return half + time.Duration(c.rand(int64(d-half)+1))
}

// ackedTopic clears a diagnosis that an acknowledgement of its topic
// disproves.
func (c *Client) ackedTopic(kind, topic string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if kind == kindSubscribe {
		delete(c.auth.suspects, topic)
	}
	if dg := c.auth.diag; dg != nil && dg.Kind == kind && dg.Topic == topic {
		c.auth.diag = nil
	}
}

// subscribedAll clears a diagnosis of a close after a SUBSCRIBE once every
// registered filter went through on a connection.
func (c *Client) subscribedAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dg := c.auth.diag; dg != nil && dg.Kind == kindSubscribe && dg.closed {
		c.auth.diag = nil
	}
}

// refused records a SUBACK failure code for filter.
func (c *Client) refused(filter string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.auth.diag = &Diagnosis{Text: "the broker refused subscribe to " + filter + " (SUBACK failure): the IoT policy probably denies it",
		Kind: kindSubscribe, Topic: filter, InARow: 1, At: c.now()}
}

// suspect reports whether filter was in a SUBSCRIBE the broker closed the
// connection after; c.mu must be held.
func (c *Client) suspectLocked(filter string) bool { return c.auth.suspects[filter] }

// RetryNow ends the wait for the next connection attempt, if Run is
// waiting out a backoff, and forgets the policy backoff built up so far: a
// technician fixed the policy. While connected it does nothing.
func (c *Client) RetryNow() {
	c.mu.Lock()
	c.auth.fails = 0
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// backoffSleep waits d, or until RetryNow; it returns an error only when
// ctx ended.
func (c *Client) backoffSleep(ctx context.Context, d time.Duration) error {
	select {
	case <-c.wake: // a RetryNow while connected is not for this wait
	default:
	}
	c.mu.Lock()
	c.auth.next = c.now().Add(d)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.auth.next = time.Time{}
		c.mu.Unlock()
	}()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-c.wake:
			cancel()
		case <-stop:
		}
	}()
	err := c.sleep(wctx, d)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	_ = err // woken early
	return nil
}
