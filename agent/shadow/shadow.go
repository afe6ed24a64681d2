// Package shadow is the device side of the AWS IoT Device Shadow protocol:
// it subscribes to a shadow's response topics, sends get and update
// requests with a unique clientToken each and matches the answers on it,
// tracks the shadow version, and hands deltas to the agent.
//
// It ignores responses that carry another client's token (the response
// topics are shared by every subscriber) and deltas older than the last
// version it has seen. It decodes every document leniently (DecodeObject),
// so that one value Go cannot hold does not hide the rest of the document.
package shadow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Transport is the part of the MQTT client the shadow client needs.
type Transport interface {
	Publish(ctx context.Context, topic string, qos byte, payload []byte) error
	Subscribe(filter string, qos byte, h func(topic string, payload []byte)) error
}

// Rejection is an error document from a .../rejected topic.
type Rejection struct {
	Code        int    `json:"code"`
	Message     string `json:"message"`
	ClientToken string `json:"clientToken,omitempty"`
}

func (r *Rejection) Error() string { return fmt.Sprintf("shadow rejected: %d %s", r.Code, r.Message) }

// ErrNotFound is returned by Get when the shadow does not exist yet.
var ErrNotFound = errors.New("shadow: no shadow exists")

// ErrConflict is returned by Update when the version did not match.
var ErrConflict = errors.New("shadow: version conflict")

// State is the state part of a shadow document. In what the client
// received, numbers are json.Number (whatever their size) and a value
// nested deeper than MaxDepth is an Invalid: see DecodeObject.
type State struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
	Delta    map[string]any `json:"delta,omitempty"`
}

// Document is a get/accepted document.
type Document struct {
	State     State `json:"state"`
	Version   int64 `json:"version"`
	Timestamp int64 `json:"timestamp"`
}

// Delta is an update/delta event: the desired values that differ from
// the reported ones.
type Delta struct {
	State   map[string]any `json:"state"`
	Version int64          `json:"version"`
}

type response struct {
	ok  bool
	doc map[string]any // decoded leniently (see DecodeObject)
}

// Client talks to one shadow (classic when name is "").
type Client struct {
	t      Transport
	prefix string
	deltas chan Delta

	mu      sync.Mutex
	waiting map[string]chan response
	version int64
}

// New returns a client for thing's shadow called name ("" for the classic
// shadow). Call Subscribe before the transport connects.
func New(t Transport, thing, name string) *Client {
	p := "$aws/things/" + thing + "/shadow"
	if name != "" {
		p += "/name/" + name
	}
	return &Client{t: t, prefix: p, deltas: make(chan Delta, 8), waiting: map[string]chan response{}}
}

// Prefix is the shadow's topic prefix.
func (c *Client) Prefix() string { return c.prefix }

// Subscribe registers the response topics with the transport, which
// subscribes to them on every (re)connect.
func (c *Client) Subscribe() error {
	for _, op := range []string{"get", "update"} {
		for _, res := range []string{"accepted", "rejected"} {
			ok := res == "accepted"
			if err := c.t.Subscribe(c.prefix+"/"+op+"/"+res, 1, func(_ string, p []byte) { c.onResponse(ok, p) }); err != nil {
				return fmt.Errorf("subscribe shadow %s/%s: %w", op, res, err)
			}
		}
	}
	if err := c.t.Subscribe(c.prefix+"/update/delta", 1, func(_ string, p []byte) { c.onDelta(p) }); err != nil {
		return fmt.Errorf("subscribe shadow delta: %w", err)
	}
	return nil
}

// Deltas delivers update/delta events, newest version last. Stale ones
// (older than a version already seen) are dropped.
func (c *Client) Deltas() <-chan Delta { return c.deltas }

// Version is the last shadow version seen in any response.
func (c *Client) Version() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

func (c *Client) seen(v int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v < c.version {
		return false
	}
	c.version = v
	return true
}

func (c *Client) onResponse(ok bool, p []byte) {
	doc, err := DecodeObject(p)
	if err != nil {
		return // not JSON: nobody's answer can be told from it
	}
	tok, _ := doc["clientToken"].(string)
	if tok == "" {
		return
	}
	c.mu.Lock()
	ch := c.waiting[tok]
	delete(c.waiting, tok)
	c.mu.Unlock()
	if ch == nil {
		return // someone else's request
	}
	ch <- response{ok: ok, doc: doc} // buffered 1, sent once
}

func (c *Client) onDelta(p []byte) {
	d, err := parseDelta(p)
	if err != nil || d.State == nil {
		return
	}
	if !c.seen(d.Version) {
		return
	}
	// Never block the transport's dispatcher: when the agent is behind,
	// the oldest delta is dropped (a newer one, or the next get, covers it).
	for {
		select {
		case c.deltas <- d:
			return
		default:
			select {
			case <-c.deltas:
			default:
			}
		}
	}
}

// Get fetches the whole document. A missing shadow is ErrNotFound.
func (c *Client) Get(ctx context.Context) (Document, error) {
	p, err := c.request(ctx, "get", map[string]any{})
	if err != nil {
		var r *Rejection
		if errors.As(err, &r) && r.Code == 404 {
			return Document{}, fmt.Errorf("%w: %s", ErrNotFound, r.Message)
		}
		return Document{}, err
	}
	d := documentFrom(p)
	c.seen(d.Version)
	return d, nil
}

// Update sends a state patch. version > 0 makes it conditional: a
// mismatch is ErrConflict. It returns the new version.
func (c *Client) Update(ctx context.Context, state State, version int64) (int64, error) {
	req := map[string]any{"state": state}
	if version > 0 {
		req["version"] = version
	}
	p, err := c.request(ctx, "update", req)
	if err != nil {
		var r *Rejection
		if errors.As(err, &r) && r.Code == 409 {
			return 0, fmt.Errorf("%w: %s", ErrConflict, r.Message)
		}
		return 0, err
	}
	v := integer(p, "version")
	c.seen(v)
	return v, nil
}

// request sends op and returns the accepted answer, decoded.
func (c *Client) request(ctx context.Context, op string, req map[string]any) (map[string]any, error) {
	tok := newToken()
	req["clientToken"] = tok
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode shadow %s: %w", op, err)
	}
	ch := make(chan response, 1)
	c.mu.Lock()
	c.waiting[tok] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, tok)
		c.mu.Unlock()
	}()
	if err := c.t.Publish(ctx, c.prefix+"/"+op, 1, body); err != nil {
		return nil, fmt.Errorf("publish shadow %s: %w", op, err)
	}
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("shadow %s: %w", op, ctx.Err())
	case r := <-ch:
		if !r.ok {
			msg, _ := r.doc["message"].(string)
			return nil, &Rejection{Code: int(integer(r.doc, "code")), Message: msg, ClientToken: tok}
		}
		return r.doc, nil
	}
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
