package outbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	bolt "go.etcd.io/bbolt"
)

// This file is the outbox's memory queue: where messages wait while the
// disk refuses writes (no space left, I/O error, quota, read-only), so
// that a full disk does not lose an alarm. Run retries the disk with
// backoff and moves what waits in memory to disk, in order, as soon as it
// takes writes again; meanwhile the transport drains memory straight to
// the broker (Peek returns it after what is on disk).

// Warning is a temperature warning: more precious than telemetry, less
// than an alarm, in the memory queue. On disk a warning is stored (and
// read back) as an Alarm, so that the record format does not change.
const Warning Class = 2

// Memory-queue bounds and retry timing.
const (
	DefaultMemoryMessages        = 1000
	MaxMemoryBytes        int64  = 1 << 20 // topic plus payload bytes held in memory
	retryMin                     = 500 * time.Millisecond
	retryMax                     = 10 * time.Second
	flushChunk                   = 64 // messages moved to disk per hold of the lock
	memBit                uint64 = 1 << 63
)

// keyDropWarn persists the warnings the memory queue dropped (the disk
// counts warnings it drops as alarms).
var keyDropWarn = []byte("dropped_warning")

// spill is the memory queue and the disk's health; guarded by Outbox.mu.
type spill struct {
	max   int
	msgs  []Message // memory IDs (memBit set), oldest first
	bytes int64
	next  uint64

	// dropped counts, by class, what the memory queue dropped and the disk
	// has not recorded yet; droppedWarn is what it has.
	dropped     [3]uint64
	droppedWarn uint64

	toDelete map[uint64]struct{} // delivered disk IDs whose delete failed
	moved    map[uint64]uint64   // memory ID -> disk ID, for a message moved while in flight
	peeked   map[uint64]bool     // memory IDs handed to the drainer

	err      error     // the disk's last write failure; nil while it takes writes
	since    time.Time // when the disk started to refuse
	retryAt  time.Time
	backoff  time.Duration
	kick     chan struct{} // wakes Run
	changes  chan struct{} // the disk failed or recovered, or memory dropped
	failures uint64        // write failures since start
	// lastErr is the last write failure, kept after the disk recovers.
	lastErr   error
	lastErrAt time.Time
}

func newSpill(max int) spill {
	if max <= 0 {
		max = DefaultMemoryMessages
	}
	return spill{max: max, kick: make(chan struct{}, 1), changes: make(chan struct{}, 1)}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// diskClass is how a class is stored: warnings as alarms.
func diskClass(c Class) Class {
	if c == Warning {
		return Alarm
	}
	return c
}

// spillingLocked reports whether new messages must go to memory because
// memory holds older ones (order), or disk deletes are owed. (With memory
// empty, a message tries the disk even while it has been refusing.)
func (o *Outbox) spillingLocked() bool {
	s := &o.mem
	return len(s.msgs) > 0 || len(s.toDelete) > 0
}

// owedLocked reports whether Run has work: a spill, or a disk to retry.
func (o *Outbox) owedLocked() bool { return o.spillingLocked() || o.mem.err != nil }

// diskFailedLocked records a failed write and schedules a retry.
func (o *Outbox) diskFailedLocked(err error) {
	s := &o.mem
	now := time.Now()
	s.failures++
	if s.err == nil {
		s.since = now
		s.backoff = retryMin
		poke(s.changes)
	} else {
		s.backoff = min(2*s.backoff, retryMax)
	}
	s.err, s.lastErr, s.lastErrAt = err, err, now
	// Full jitter over the upper half: devices that filled up together do
	// not retry together.
	s.retryAt = now.Add(s.backoff/2 + rand.N(s.backoff/2+1))
	poke(s.kick)
}

// toMemoryLocked queues a message in memory. When memory is full the
// oldest message of the least precious class goes (telemetry, then
// warnings, then alarms); an incoming message less precious than all that
// is queued is dropped itself (ID 0). Drops are counted by class.
func (o *Outbox) toMemoryLocked(topic string, payload []byte, class Class) uint64 {
	s := &o.mem
	size := int64(len(topic) + len(payload))
	over := func() bool { return len(s.msgs)+1 > s.max || s.bytes+size > MaxMemoryBytes }
	for over() {
		victim := -1
		for i, m := range s.msgs {
			if rank(m.Class) <= rank(class) && (victim < 0 || rank(m.Class) < rank(s.msgs[victim].Class)) {
				victim = i
			}
		}
		if victim < 0 { // everything queued is more precious
			s.dropped[class]++
			poke(s.changes)
			return 0
		}
		v := s.msgs[victim]
		s.msgs = append(s.msgs[:victim], s.msgs[victim+1:]...)
		s.bytes -= int64(len(v.Topic) + len(v.Payload))
		delete(s.peeked, v.ID)
		s.dropped[v.Class]++
		poke(s.changes)
	}
	s.next++
	m := Message{ID: memBit | s.next, Topic: topic, Payload: append([]byte(nil), payload...), Class: class, Enqueued: o.now()}
	s.msgs = append(s.msgs, m)
	s.bytes += size
	poke(o.ready)
	poke(s.kick)
	return m.ID
}

// rank orders classes from the least precious.
func rank(c Class) int {
	switch c {
	case Telemetry:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// peekMemoryLocked appends memory messages, oldest first, up to max in out.
func (o *Outbox) peekMemoryLocked(out []Message, max int) []Message {
	s := &o.mem
	for _, m := range s.msgs {
		if len(out) >= max {
			break
		}
		if s.peeked == nil {
			s.peeked = map[uint64]bool{}
		}
		s.peeked[m.ID] = true
		m.Payload = append([]byte(nil), m.Payload...)
		out = append(out, m)
	}
	return out
}

// ackMemoryLocked removes acknowledged memory messages and returns the
// disk IDs among ids (including those of memory messages moved to disk
// since they were peeked).
func (o *Outbox) ackMemoryLocked(ids []uint64) []uint64 {
	s := &o.mem
	disk := ids[:0:0]
	for _, id := range ids {
		if id&memBit == 0 {
			disk = append(disk, id)
			continue
		}
		if d, ok := s.moved[id]; ok {
			delete(s.moved, id)
			disk = append(disk, d)
			continue
		}
		for i, m := range s.msgs {
			if m.ID == id {
				s.msgs = append(s.msgs[:i], s.msgs[i+1:]...)
				s.bytes -= int64(len(m.Topic) + len(m.Payload))
				break
			}
		}
		delete(s.peeked, id)
	}
	return disk
}

// deleteLaterLocked remembers delivered disk messages whose delete failed:
// Peek skips them, and Run deletes them once the disk takes writes.
func (o *Outbox) deleteLaterLocked(ids []uint64, err error) {
	s := &o.mem
	if s.toDelete == nil {
		s.toDelete = map[uint64]struct{}{}
	}
	for _, id := range ids {
		s.toDelete[id] = struct{}{}
	}
	o.removeLocked(ids...)
	o.diskFailedLocked(err)
}

// Run retries the disk while it refuses writes, with backoff (0.5 s up to
// 10 s, jittered), and moves the messages that wait in memory to disk, in
// order, once it takes them. It returns when ctx ends, after one last try
// to save what memory holds.
func (o *Outbox) Run(ctx context.Context) error {
	for {
		o.mu.Lock()
		pending, wait := o.owedLocked(), time.Until(o.mem.retryAt)
		if o.mem.err == nil {
			wait = 0
		}
		o.mu.Unlock()
		if !pending {
			select {
			case <-ctx.Done():
				return nil
			case <-o.mem.kick:
				continue
			}
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				o.flush()
				return nil
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			o.flush()
			return nil
		}
		o.flush()
	}
}

// flush writes what the disk owes (deletes of delivered messages, the
// memory queue's drop counts), then moves up to flushChunk messages from
// memory to disk. A failure schedules the next try.
func (o *Outbox) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := &o.mem
	if !o.owedLocked() {
		return
	}
	next := o.cnt
	next.dropTel += s.dropped[Telemetry]
	next.dropAl += s.dropped[Alarm]
	warn := s.droppedWarn + s.dropped[Warning]
	err := o.db.Update(func(tx *bolt.Tx) error {
		b, meta, err := buckets(tx)
		if err != nil {
			return err
		}
		for id := range s.toDelete {
			if err := b.Delete(encodeKey(id)); err != nil {
				return fmt.Errorf("delete %d: %w", id, err)
			}
		}
		if err := putCounters(meta, next); err != nil {
			return err
		}
		return meta.Put(keyDropWarn, encodeKey(warn))
	})
	if err != nil {
		o.diskFailedLocked(fmt.Errorf("outbox write: %w", err))
		return
	}
	o.cnt, s.droppedWarn, s.dropped, s.toDelete = next, warn, [3]uint64{}, nil
	for i := 0; i < flushChunk && len(s.msgs) > 0; i++ {
		m := s.msgs[0]
		id, err := o.appendLocked(m.Topic, m.Payload, diskClass(m.Class), m.Enqueued)
		if err != nil {
			o.diskFailedLocked(err)
			return
		}
		s.msgs = s.msgs[1:]
		s.bytes -= int64(len(m.Topic) + len(m.Payload))
		if s.peeked[m.ID] {
			delete(s.peeked, m.ID)
			if s.moved == nil || len(s.moved) > s.max { // forget acks that never came
				s.moved = map[uint64]uint64{}
			}
			if id != 0 {
				s.moved[m.ID] = id
			}
		}
	}
	if len(s.msgs) == 0 {
		s.msgs, s.peeked = nil, nil
	}
	if s.err != nil {
		s.err = nil
		poke(s.changes)
	}
	if len(s.msgs) > 0 {
		poke(s.kick)
	}
}

// Health is the disk side of the outbox: whether it takes writes, and
// what waits in memory meanwhile.
type Health struct {
	// DiskError is the last write the disk refused; "" while it takes them.
	DiskError string
	Since     time.Time // when the disk started to refuse
	// Memory and MemoryBytes are the messages waiting in memory, of at most
	// MemoryMax (and MaxMemoryBytes).
	Memory      int
	MemoryBytes int64
	MemoryMax   int
	// WriteFailures counts the disk writes refused since start; the last
	// one stays in LastWriteError (innermost text) after the disk recovers.
	WriteFailures  uint64
	LastWriteError string
	LastWriteAt    time.Time
}

// Degraded says why messages are at risk, or "" when they are not. The
// text changes only when the state does (no counts in it).
func (h Health) Degraded() string {
	switch {
	case h.DiskError != "":
		return fmt.Sprintf("the disk refuses writes since %s (%s); messages wait in memory (up to %d)",
			h.Since.UTC().Format(time.RFC3339), h.DiskError, h.MemoryMax)
	case h.Memory > 0:
		return "moving the messages that waited in memory to disk"
	}
	return ""
}

// Health returns the disk's health and the memory queue's size.
func (o *Outbox) Health() Health {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := &o.mem
	h := Health{Memory: len(s.msgs), MemoryBytes: s.bytes, MemoryMax: s.max, WriteFailures: s.failures}
	if s.err != nil {
		h.DiskError, h.Since = diskProblem(s.err), s.since
	}
	if s.lastErr != nil {
		h.LastWriteError, h.LastWriteAt = diskProblem(s.lastErr), s.lastErrAt
	}
	return h
}

// diskProblem is the innermost text of a write error (the errno's, as a
// rule): "no space left on device".
func diskProblem(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

// Changes receives (capacity 1) when the disk starts or stops refusing
// writes, or the memory queue drops a message: a reporter reads Health and
// Stats then.
func (o *Outbox) Changes() <-chan struct{} { return o.mem.changes }

// addMemoryStatsLocked adds the memory queue's drops to st.
func (o *Outbox) addMemoryStatsLocked(st *Stats) {
	s := &o.mem
	st.DroppedTelemetry += s.dropped[Telemetry]
	st.DroppedAlarm += s.dropped[Alarm]
	st.DroppedWarning = s.droppedWarn + s.dropped[Warning]
	st.Dropped += s.dropped[Telemetry] + s.dropped[Alarm] + st.DroppedWarning
	st.Memory = len(s.msgs)
}
