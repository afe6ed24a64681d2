package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/agent/outbox"
)

// The outbox's queue and quarantine as the technician sees them: the
// local API's outbox.list, outbox.retry and outbox.purge actions, and the
// same operations on the state dir while the agent is not running
// (iotagent outbox list|retry|purge).

// ErrAgentRunning: the state dir's agent.db is locked by a running agent.
var ErrAgentRunning = errors.New("the agent is running")

// defaultListLimit is how many messages outbox.list returns unless asked.
const defaultListLimit = 100

// OpenOutbox opens the outbox in stateDir/agent.db for a command run while
// the agent is down. It bounds nothing (trimming is the agent's business
// at its next start). A database locked by a running agent is
// ErrAgentRunning; a missing one wraps os.ErrNotExist. Close the returned
// database when done.
func OpenOutbox(stateDir string) (*outbox.Outbox, *bolt.DB, error) {
	path := filepath.Join(stateDir, "agent.db")
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("state %s: %w", path, err)
	}
	// The agent's own open path: a damaged agent.db is recovered here as
	// the agent would at its next start (docs/state-files.md).
	db, _, err := openStateDB(stateDir, path, time.Now())
	if errors.Is(err, errInUse) {
		return nil, nil, fmt.Errorf("%w: %w (use the agent's socket, or stop it)", ErrAgentRunning, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open state %s: %w", path, err)
	}
	ob, err := outbox.Open(db, outbox.Options{MaxMessages: math.MaxInt, MaxBytes: math.MaxInt64}, nil)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return ob, db, nil
}

// OutboxStats fills the outbox section's counters from ob.
func OutboxStats(ob *outbox.Outbox, out *localapi.Outbox) {
	st := ob.Stats()
	out.Depth, out.Bytes, out.Dropped = st.Len, st.Bytes, st.Dropped
	out.DroppedTelemetry, out.DroppedAlarm, out.Corrupt = st.DroppedTelemetry, st.DroppedAlarm, st.Corrupt
	h := ob.Health()
	out.DroppedWarning, out.Degraded, out.Memory, out.MemoryMax = st.DroppedWarning, h.Degraded(), h.Memory, h.MemoryMax
	if st.Len > 0 {
		if m, err := ob.Peek(1); err == nil && len(m) == 1 {
			out.Oldest = m[0].Enqueued
		}
	}
	qs, err := ob.QuarantineStats()
	if err != nil {
		out.Error = err.Error()
		return
	}
	out.Quarantined, out.QuarantinedTotal, out.Purged = qs.Len, qs.Total, qs.Purged
}

// OutboxList lists the queue (oldest first) or the quarantine.
func OutboxList(ob *outbox.Outbox, req localapi.OutboxRequest) (localapi.OutboxList, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	out := localapi.OutboxList{Quarantine: req.Quarantine, Messages: []localapi.OutboxMessage{}}
	if req.Quarantine {
		qs, err := ob.ListQuarantine()
		if err != nil {
			return out, err
		}
		for _, q := range qs {
			if len(out.Messages) == limit {
				out.More++
				continue
			}
			m := listed(q.Message)
			m.Reason, m.QuarantinedAt = q.Reason, q.At
			out.Messages = append(out.Messages, m)
		}
	} else {
		msgs, err := ob.Peek(limit)
		if err != nil {
			return out, err
		}
		for _, m := range msgs {
			out.Messages = append(out.Messages, listed(m))
		}
		out.More = max(0, ob.Stats().Len-len(msgs))
	}
	OutboxStats(ob, &out.Stats)
	return out, nil
}

func listed(m outbox.Message) localapi.OutboxMessage {
	const cut = 256
	p := m.Payload
	text := ""
	if len(p) > cut {
		p = p[:cut]
		for len(p) > 0 && !utf8.Valid(p) { // do not cut a character in two
			p = p[:len(p)-1]
		}
		text = "…"
	}
	if utf8.Valid(p) {
		text = string(p) + text
	} else {
		text = fmt.Sprintf("(%d bytes, not UTF-8)", len(m.Payload))
	}
	return localapi.OutboxMessage{ID: m.ID, Topic: m.Topic, Class: m.Class.String(), Enqueued: m.Enqueued, Bytes: len(m.Payload), Payload: text}
}

// OutboxRetry moves quarantined messages (all when req.IDs is empty) back
// to the front of the queue.
func OutboxRetry(ob *outbox.Outbox, req localapi.OutboxRequest) (localapi.OutboxChange, error) {
	moved, err := ob.Retry(req.IDs...)
	if err != nil {
		return localapi.OutboxChange{}, err
	}
	out := localapi.OutboxChange{IDs: []uint64{}}
	for _, m := range moved {
		out.IDs = append(out.IDs, m.ID)
	}
	out.Message = fmt.Sprintf("%d quarantined message(s) back in the queue, first in line", len(moved))
	if len(moved) == 0 {
		out.Message = "the quarantine is empty: nothing to retry"
	}
	return out, nil
}

// OutboxPurge deletes messages from the queue or the quarantine. Without
// IDs it needs req.All.
func OutboxPurge(ob *outbox.Outbox, req localapi.OutboxRequest) (localapi.OutboxChange, error) {
	if len(req.IDs) == 0 && !req.All {
		return localapi.OutboxChange{}, localapi.BadRequest("name the messages to purge, or purge all of them with --all")
	}
	var ids []uint64
	var err error
	where := "queue"
	switch {
	case req.Quarantine:
		where = "quarantine"
		ids, err = ob.PurgeQuarantine(req.IDs...)
	case len(req.IDs) == 0:
		ids, err = ob.Purge(ob.QueuedIDs()...)
	default:
		ids, err = ob.Purge(req.IDs...)
	}
	if err != nil {
		return localapi.OutboxChange{}, err
	}
	if ids == nil {
		ids = []uint64{}
	}
	return localapi.OutboxChange{IDs: ids, Message: fmt.Sprintf("%d message(s) deleted from the %s", len(ids), where)}, nil
}

// registerOutboxAPI registers the outbox actions of the running agent.
func (a *Agent) registerOutboxAPI(s *localapi.Server) {
	decode := func(body []byte) (localapi.OutboxRequest, error) {
		var req localapi.OutboxRequest
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				return req, localapi.BadRequest("want {\"quarantine\": bool, \"ids\": [numbers], \"all\": bool, \"limit\": number}: %v", err)
			}
		}
		return req, nil
	}
	notFound := func(err error) error {
		if errors.Is(err, outbox.ErrNotFound) {
			return localapi.BadRequest("%v", err)
		}
		return err
	}
	s.RegisterAction(localapi.ActionOutboxList, func(_ context.Context, body []byte) (any, error) {
		req, err := decode(body)
		if err != nil {
			return nil, err
		}
		return OutboxList(a.box(), req)
	})
	s.RegisterAction(localapi.ActionOutboxRetry, func(_ context.Context, body []byte) (any, error) {
		req, err := decode(body)
		if err != nil {
			return nil, err
		}
		out, err := OutboxRetry(a.box(), req)
		if err != nil {
			return nil, notFound(err)
		}
		if len(out.IDs) > 0 {
			a.log.Info("quarantined outbox messages retried through the local API", "ids", out.IDs)
			out.Message += "; the agent sends them now"
			signal(a.dirty)
		}
		if tr := a.transport(); tr != nil && !tr.Connected() {
			out.Message += " (and reconnects at once instead of waiting out its backoff)"
		}
		a.transport().RetryNow()
		return out, nil
	})
	s.RegisterAction(localapi.ActionOutboxPurge, func(_ context.Context, body []byte) (any, error) {
		req, err := decode(body)
		if err != nil {
			return nil, err
		}
		out, err := OutboxPurge(a.box(), req)
		if err != nil {
			return nil, notFound(err)
		}
		a.log.Warn("outbox messages purged through the local API", "ids", out.IDs, "quarantine", req.Quarantine)
		signal(a.dirty)
		return out, nil
	})
}

// onQuarantine records a quarantined message where the user looks: the
// last error (status, the shadow's last_error) and the reported outbox.
func (a *Agent) onQuarantine(m outbox.Message, reason string) {
	a.mu.Lock()
	a.st.LastError = fmt.Sprintf("outbox message %d to %s quarantined: %s; see iotagent outbox list --quarantine", m.ID, m.Topic, reason)
	a.mu.Unlock()
	signal(a.dirty)
}
