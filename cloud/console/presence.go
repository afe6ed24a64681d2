package console

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
)

// Presence is the fleet's connection state, from the broker's lifecycle
// events ($aws/events/presence/...), as a backend on AWS would keep it.
type Presence struct {
	log *slog.Logger
	mu  sync.Mutex
	ids map[string]presence
}

// presence is what the lifecycle events of a client id said: its open
// sessions (a session taken over by a new connection may report its end
// after the new one's start) and the time and reason of the last change.
type presence struct {
	sessions map[string]bool
	since    time.Time
	reason   string
}

// Connection is what the console shows of a client id's presence.
type Connection struct {
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"`
	Reason    string    `json:"reason,omitempty"` // the last disconnect's
}

// NewPresence returns an empty tracker; log may be nil.
func NewPresence(log *slog.Logger) *Presence {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Presence{log: log, ids: map[string]presence{}}
}

// Watch taps the broker's lifecycle events. Call it before the broker
// accepts connections, so that no event is missed.
func (p *Presence) Watch(t Tapper) (stop func(), err error) {
	return t.Tap("$aws/events/presence/+/+", p.event)
}

func (p *Presence) event(topic string, payload []byte) {
	// $aws/events/presence/{connected,disconnected}/<clientId>
	kind, id, ok := strings.Cut(strings.TrimPrefix(topic, "$aws/events/presence/"), "/")
	if !ok || id == "" {
		return
	}
	var ev broker.PresenceEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		p.log.Warn("console: lifecycle event not understood", "topic", topic, "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.ids[id]
	if st.sessions == nil {
		st.sessions = map[string]bool{}
	}
	if kind == "connected" {
		st.sessions[ev.SessionIdentifier] = true
	} else {
		delete(st.sessions, ev.SessionIdentifier)
	}
	st.since, st.reason = time.UnixMilli(ev.Timestamp), ev.DisconnectReason
	p.ids[id] = st
}

// Connection returns the state of client id (a thing's client id is its
// name); an id never seen is disconnected.
func (p *Presence) Connection(id string) Connection {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.ids[id]
	if !ok {
		return Connection{}
	}
	c := Connection{Connected: len(st.sessions) > 0, Since: st.since}
	if !c.Connected {
		c.Reason = st.reason
	}
	return c
}
