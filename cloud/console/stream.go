package console

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/iotagent/iotagent/cloud/broker"
)

// MaxShownPayload bounds the bytes of one payload a live view is sent.
const MaxShownPayload = 16 << 10

// keepAliveEvery is how often an idle stream sends a comment, so that a
// proxy or the browser does not take it for dead.
const keepAliveEvery = 15 * time.Second

// message is one live message as the page gets it.
type message struct {
	Topic     string `json:"topic"`
	Payload   string `json:"payload"`
	Base64    bool   `json:"base64,omitempty"`    // the payload was not UTF-8
	Truncated int    `json:"truncated,omitempty"` // bytes left out
	Time      int64  `json:"time"`                // epoch ms, when the broker published it
}

// viewer is one open live view: its filters and bounded queue.
type viewer struct {
	filters []string
	ch      chan *message
	dropped atomic.Int64
	done    chan struct{}
	once    sync.Once
}

func (v *viewer) close() { v.once.Do(func() { close(v.done) }) }

// hub fans the broker's messages out to the viewers without ever waiting
// for one: a full queue drops the message and counts it.
type hub struct {
	buffer  int
	n       atomic.Int32 // viewers, read without the lock in the publish path
	mu      sync.RWMutex
	viewers map[*viewer]struct{}
	dropped atomic.Int64 // all viewers' drops since start
	muted   atomic.Bool  // set while the tap is made: mochi's retained messages are not shown
}

func (h *hub) add(filters []string) *viewer {
	v := &viewer{filters: filters, ch: make(chan *message, h.buffer), done: make(chan struct{})}
	h.mu.Lock()
	if h.viewers == nil {
		h.viewers = map[*viewer]struct{}{}
	}
	h.viewers[v] = struct{}{}
	h.n.Store(int32(len(h.viewers)))
	h.mu.Unlock()
	return v
}

func (h *hub) remove(v *viewer) {
	h.mu.Lock()
	delete(h.viewers, v)
	h.n.Store(int32(len(h.viewers)))
	h.mu.Unlock()
	v.close()
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for v := range h.viewers {
		v.close()
	}
}

// publish is the broker tap: it runs in the publish path.
func (h *hub) publish(topic string, payload []byte) {
	if h.n.Load() == 0 || h.muted.Load() {
		return
	}
	var m *message
	h.mu.RLock()
	defer h.mu.RUnlock()
	for v := range h.viewers {
		if !matchAny(v.filters, topic) {
			continue
		}
		if m == nil {
			m = newMessage(topic, payload)
		}
		select {
		case v.ch <- m:
		default:
			v.dropped.Add(1)
			h.dropped.Add(1)
		}
	}
}

func matchAny(filters []string, topic string) bool {
	for _, f := range filters {
		if broker.Match(f, topic) {
			return true
		}
	}
	return false
}

func newMessage(topic string, payload []byte) *message {
	m := &message{Topic: topic, Time: time.Now().UnixMilli()}
	if len(payload) > MaxShownPayload {
		m.Truncated = len(payload) - MaxShownPayload
		payload = payload[:MaxShownPayload]
	}
	if utf8.Valid(payload) {
		m.Payload = string(payload)
	} else {
		m.Payload, m.Base64 = base64.StdEncoding.EncodeToString(payload), true
	}
	return m
}

// stream serves a live view as Server-Sent Events: "message" events (a
// message, with the view's drop count so far) and "dropped" events when
// messages were dropped since the last one sent. ?filter= is repeated or
// holds several filters separated by commas or newlines.
func (c *Console) stream(w http.ResponseWriter, r *http.Request) {
	filters, err := ParseFilters(joinLines(r.URL.Query()["filter"]))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("streaming unsupported"))
		return
	}
	v, err := c.addViewer(filters)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	defer c.removeViewer(v)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The first event says which filters the view watches.
	b, _ := json.Marshal(map[string]any{"filters": filters})
	fmt.Fprintf(w, "event: ready\ndata: %s\n\n", b)
	fl.Flush()
	tick := time.NewTicker(keepAliveEvery)
	defer tick.Stop()
	var sentDrops int64
	for {
		select {
		case m := <-v.ch:
			b, err := json.Marshal(m)
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "event: message\ndata: %s\n\n", b); err != nil {
				return
			}
			// Drain what is queued before flushing.
			for more := true; more; {
				select {
				case m := <-v.ch:
					b, _ := json.Marshal(m)
					if _, err := fmt.Fprintf(w, "event: message\ndata: %s\n\n", b); err != nil {
						return
					}
				default:
					more = false
				}
			}
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case <-v.done:
			return
		case <-r.Context().Done():
			return
		}
		if d := v.dropped.Load(); d != sentDrops {
			sentDrops = d
			fmt.Fprintf(w, "event: dropped\ndata: {\"dropped\":%d}\n\n", d)
		}
		fl.Flush()
	}
}

func joinLines(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += "\n"
		}
		out += s
	}
	return out
}
