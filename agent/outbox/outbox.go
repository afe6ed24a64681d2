package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Class says how precious a message is when the outbox is full.
type Class uint8

const (
	// Telemetry is periodic data: the oldest is dropped first.
	Telemetry Class = iota
	// Alarm covers alarms and warnings: never dropped while any telemetry
	// is queued.
	Alarm
)

func (c Class) String() string {
	switch c {
	case Telemetry:
		return "telemetry"
	case Alarm:
		return "alarm"
	case Warning:
		return "warning"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Message is one queued publish.
type Message struct {
	ID       uint64 // increasing, never reused, > 0
	Topic    string
	Payload  []byte
	Class    Class
	Enqueued time.Time
}

// Options bound the queue. Zero values take the defaults.
type Options struct {
	MaxMessages int   // default 10000
	MaxBytes    int64 // topic plus payload bytes; default 16 MiB
	// MemoryMessages bounds the memory queue used while the disk refuses
	// writes; default DefaultMemoryMessages (see memory.go).
	MemoryMessages int
}

// Defaults for zero Options fields.
const (
	DefaultMaxMessages       = 10000
	DefaultMaxBytes    int64 = 16 << 20
)

// Stats is a snapshot of the queue. Drop counters survive restarts.
type Stats struct {
	Len              int
	Bytes            int64  // topic plus payload bytes queued
	Dropped          uint64 // DroppedTelemetry + DroppedAlarm + Corrupt
	DroppedTelemetry uint64 // telemetry dropped because the queue was full
	DroppedAlarm     uint64 // alarms dropped because the queue was full of alarms
	Corrupt          uint64 // unreadable records found and removed
	// DroppedWarning counts warnings the memory queue dropped (the disk
	// counts the warnings it drops in DroppedAlarm); Memory is the messages
	// waiting in memory while the disk refuses writes (not in Len).
	DroppedWarning uint64
	Memory         int
}

// Errors for callers that branch.
var (
	ErrTooLarge   = errors.New("outbox: message larger than the outbox")
	ErrBadMessage = errors.New("outbox: invalid message")
)

var (
	bucketName = []byte("outbox")
	metaName   = []byte("outbox_meta")
	keyDropTel = []byte("dropped_telemetry")
	keyDropAl  = []byte("dropped_alarm")
	keyCorrupt = []byte("corrupt")
)

type entry struct {
	size  int64
	class Class
}

type counters struct {
	dropTel, dropAl, corrupt uint64
}

// Outbox is a durable FIFO of messages in a bbolt database. It is safe for
// concurrent use. It does not own the database: closing the database is the
// caller's job, after the last call.
type Outbox struct {
	db       *bolt.DB
	now      func() time.Time
	maxMsgs  int
	maxBytes int64
	ready    chan struct{}

	mu     sync.Mutex
	idx    map[uint64]entry
	queues [2][]uint64 // per class, ascending IDs
	bytes  int64
	cnt    counters
	q      quarantineState // see quarantine.go
	mem    spill           // the memory queue: see memory.go
}

// Open loads (creating if needed) the outbox in db. Unreadable records are
// removed and counted; if the stored queue exceeds the bounds it is trimmed
// by the usual drop policy. now stamps Enqueued (time.Now when nil).
func Open(db *bolt.DB, o Options, now func() time.Time) (*Outbox, error) {
	if db == nil {
		return nil, fmt.Errorf("open outbox: %w: nil database", ErrBadMessage)
	}
	if o.MaxMessages < 0 || o.MaxBytes < 0 {
		return nil, fmt.Errorf("open outbox: negative bound (messages %d, bytes %d)", o.MaxMessages, o.MaxBytes)
	}
	if o.MaxMessages == 0 {
		o.MaxMessages = DefaultMaxMessages
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if now == nil {
		now = time.Now
	}
	ob := &Outbox{
		db:       db,
		now:      now,
		maxMsgs:  o.MaxMessages,
		maxBytes: o.MaxBytes,
		ready:    make(chan struct{}, 1),
		idx:      make(map[uint64]entry),
		mem:      newSpill(o.MemoryMessages),
	}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName)
		if err != nil {
			return fmt.Errorf("create bucket: %w", err)
		}
		meta, err := tx.CreateBucketIfNotExists(metaName)
		if err != nil {
			return fmt.Errorf("create meta bucket: %w", err)
		}
		ob.cnt = counters{
			dropTel: getCounter(meta, keyDropTel),
			dropAl:  getCounter(meta, keyDropAl),
			corrupt: getCounter(meta, keyCorrupt),
		}
		ob.mem.droppedWarn = getCounter(meta, keyDropWarn)
		var maxID uint64
		c := b.Cursor()
		for k, v := c.First(); k != nil; {
			if v == nil { // a nested bucket: not ours, leave it alone
				k, v = c.Next()
				continue
			}
			// The header and checksum only: Open needs each record's class
			// and size, not a copy of its topic and payload.
			id, err := decodeKey(k)
			var e entry
			if err == nil {
				e.class, e.size, err = checkRecord(v)
			}
			if err != nil {
				key := append([]byte{}, k...)
				if err := c.Delete(); err != nil {
					return fmt.Errorf("delete corrupt record: %w", err)
				}
				ob.cnt.corrupt++
				k, v = c.Seek(key) // the next key after the deleted one
				continue
			}
			ob.addEntryLocked(id, e)
			maxID = max(maxID, id)
			k, v = c.Next()
		}
		if b.Sequence() < maxID {
			if err := b.SetSequence(maxID); err != nil {
				return fmt.Errorf("set sequence: %w", err)
			}
		}
		victims, _ := ob.planLocked(0, 0, Telemetry, false)
		next, err := ob.dropTx(b, victims)
		if err != nil {
			return err
		}
		ob.cnt = next
		return putCounters(meta, ob.cnt)
	})
	if err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	// planLocked ran against the full index; now forget the victims.
	ob.trimLocked()
	return ob, nil
}

// Append queues a message and returns its ID. When the queue is full it
// first drops the oldest telemetry; only when no telemetry is queued does it
// drop the oldest alarm. An incoming telemetry message that would need an
// alarm dropped is itself dropped instead: Append then returns ID 0 and a nil
// error, and Stats counts it. A message larger than MaxBytes is ErrTooLarge.
//
// While the disk refuses writes, Append queues in memory instead (see
// memory.go) and returns that message's ID, with a nil error.
func (o *Outbox) Append(topic string, payload []byte, class Class) (uint64, error) {
	switch {
	case topic == "":
		return 0, fmt.Errorf("append: %w: empty topic", ErrBadMessage)
	case len(topic) > maxTopicLen:
		return 0, fmt.Errorf("append: %w: topic is %d bytes", ErrBadMessage, len(topic))
	case class > Warning:
		return 0, fmt.Errorf("append: %w: class %d", ErrBadMessage, class)
	}
	size := int64(len(topic) + len(payload))
	if size > o.maxBytes {
		return 0, fmt.Errorf("append %s: %d bytes > %d: %w", topic, size, o.maxBytes, ErrTooLarge)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.spillingLocked() {
		return o.toMemoryLocked(topic, payload, class), nil
	}
	id, err := o.appendLocked(topic, payload, diskClass(class), o.now())
	if err != nil {
		o.diskFailedLocked(err)
		return o.toMemoryLocked(topic, payload, class), nil
	}
	return id, nil
}

// appendLocked is Append to disk, in one transaction.
func (o *Outbox) appendLocked(topic string, payload []byte, class Class, enqueued time.Time) (uint64, error) {
	size := int64(len(topic) + len(payload))
	victims, dropIncoming := o.planLocked(1, size, class, true)
	m := Message{Topic: topic, Payload: payload, Class: class, Enqueued: enqueued}
	var next counters
	err := o.db.Update(func(tx *bolt.Tx) error {
		b, meta, err := buckets(tx)
		if err != nil {
			return err
		}
		if next, err = o.dropTx(b, victims); err != nil {
			return err
		}
		if dropIncoming {
			next.dropTel++
		} else {
			if m.ID, err = b.NextSequence(); err != nil {
				return fmt.Errorf("next id: %w", err)
			}
			if err := b.Put(encodeKey(m.ID), encodeRecord(m)); err != nil {
				return fmt.Errorf("put: %w", err)
			}
		}
		if next == o.cnt {
			return nil
		}
		return putCounters(meta, next)
	})
	if err != nil {
		return 0, fmt.Errorf("append %s: %w", topic, err)
	}
	o.cnt = next
	o.removeLocked(victims...)
	if !dropIncoming {
		o.addLocked(m.ID, m)
	}
	select {
	case o.ready <- struct{}{}:
	default:
	}
	return m.ID, nil
}

// Peek returns up to max of the oldest messages, oldest first, without
// removing them. An unreadable record is removed, counted and skipped.
func (o *Outbox) Peek(max int) ([]Message, error) {
	if max <= 0 {
		return nil, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Message
	var bad [][]byte
	err := o.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return errors.New("bucket missing")
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			if v == nil {
				continue
			}
			id, err := decodeKey(k)
			if _, gone := o.mem.toDelete[id]; gone {
				continue // delivered; its delete waits for the disk
			}
			var m Message
			if err == nil {
				m, err = decodeRecord(id, v)
			}
			if err != nil {
				bad = append(bad, append([]byte{}, k...))
				continue
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peek: %w", err)
	}
	out = o.peekMemoryLocked(out, max)
	if len(bad) > 0 {
		if err := o.removeCorruptLocked(bad); err != nil {
			return out, fmt.Errorf("peek: %w", err)
		}
	}
	return out, nil
}

// Ack removes delivered messages in one transaction. Unknown IDs are
// ignored.
func (o *Outbox) Ack(ids ...uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids = o.ackMemoryLocked(ids)
	known := make([]uint64, 0, len(ids))
	for _, id := range ids {
		if _, ok := o.idx[id]; ok {
			known = append(known, id)
		}
	}
	if len(known) == 0 {
		return nil
	}
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return errors.New("bucket missing")
		}
		for _, id := range known {
			if err := b.Delete(encodeKey(id)); err != nil {
				return fmt.Errorf("delete %d: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		o.deleteLaterLocked(known, fmt.Errorf("ack: %w", err))
		return nil // delivered: forgotten now, deleted once the disk takes writes
	}
	o.removeLocked(known...)
	return nil
}

// Stats returns the queue length, size and drop counters. It does not touch
// the database.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := Stats{
		Len:              len(o.idx),
		Bytes:            o.bytes,
		Dropped:          o.cnt.dropTel + o.cnt.dropAl + o.cnt.corrupt,
		DroppedTelemetry: o.cnt.dropTel,
		DroppedAlarm:     o.cnt.dropAl,
		Corrupt:          o.cnt.corrupt,
	}
	o.addMemoryStatsLocked(&st)
	return st
}

// Ready receives (capacity 1, never blocking Append) after every Append. A
// drainer selects on it when Peek returned nothing.
func (o *Outbox) Ready() <-chan struct{} { return o.ready }

// planLocked chooses what to drop so that add more messages of addBytes
// fit: the oldest telemetry first, then (for an incoming alarm or a trim)
// the oldest alarms. If an incoming telemetry message would need an alarm
// dropped, it is dropped itself and nothing else is.
func (o *Outbox) planLocked(add int, addBytes int64, class Class, incoming bool) (victims []uint64, dropIncoming bool) {
	count, bytes := len(o.idx)+add, o.bytes+addBytes
	over := func() bool { return count > o.maxMsgs || bytes > o.maxBytes }
	for i := 0; over() && i < len(o.queues[Telemetry]); i++ {
		id := o.queues[Telemetry][i]
		victims = append(victims, id)
		count--
		bytes -= o.idx[id].size
	}
	if !over() {
		return victims, false
	}
	if incoming && class == Telemetry {
		// The queue was within bounds before this message: dropping the
		// newcomer alone restores them and keeps every alarm.
		return nil, true
	}
	for i := 0; over() && i < len(o.queues[Alarm]); i++ {
		id := o.queues[Alarm][i]
		victims = append(victims, id)
		count--
		bytes -= o.idx[id].size
	}
	return victims, false
}

// dropTx deletes victims in tx and returns the counters as they will be
// once tx commits.
func (o *Outbox) dropTx(b *bolt.Bucket, victims []uint64) (counters, error) {
	next := o.cnt
	for _, id := range victims {
		if err := b.Delete(encodeKey(id)); err != nil {
			return next, fmt.Errorf("drop %d: %w", id, err)
		}
		if o.idx[id].class == Alarm {
			next.dropAl++
		} else {
			next.dropTel++
		}
	}
	return next, nil
}

// trimLocked drops from the index whatever Open's plan deleted.
func (o *Outbox) trimLocked() {
	victims, _ := o.planLocked(0, 0, Telemetry, false)
	o.removeLocked(victims...)
}

func (o *Outbox) removeCorruptLocked(keys [][]byte) error {
	var ids []uint64
	err := o.db.Update(func(tx *bolt.Tx) error {
		b, meta, err := buckets(tx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("delete corrupt record: %w", err)
			}
			if len(k) == keyLen {
				ids = append(ids, binary.BigEndian.Uint64(k))
			}
		}
		next := o.cnt
		next.corrupt += uint64(len(keys))
		return putCounters(meta, next)
	})
	if err != nil {
		return err
	}
	o.cnt.corrupt += uint64(len(keys))
	o.removeLocked(ids...)
	return nil
}

func (o *Outbox) addLocked(id uint64, m Message) {
	o.addEntryLocked(id, entry{size: int64(len(m.Topic) + len(m.Payload)), class: m.Class})
}

func (o *Outbox) addEntryLocked(id uint64, e entry) {
	o.idx[id] = e
	o.bytes += e.size
	q := o.queues[e.class]
	if n := len(q); n == 0 || q[n-1] < id {
		o.queues[e.class] = append(q, id)
		return
	}
	i, _ := slices.BinarySearch(q, id)
	o.queues[e.class] = slices.Insert(q, i, id)
}

func (o *Outbox) removeLocked(ids ...uint64) {
	for _, id := range ids {
		e, ok := o.idx[id]
		if !ok {
			continue
		}
		delete(o.idx, id)
		o.bytes -= e.size
		q := o.queues[e.class]
		i, found := slices.BinarySearch(q, id)
		switch {
		case !found:
		case i == 0:
			o.queues[e.class] = q[1:]
		default:
			o.queues[e.class] = slices.Delete(q, i, i+1)
		}
	}
}

func buckets(tx *bolt.Tx) (b, meta *bolt.Bucket, err error) {
	b, meta = tx.Bucket(bucketName), tx.Bucket(metaName)
	if b == nil || meta == nil {
		return nil, nil, errors.New("bucket missing")
	}
	return b, meta, nil
}

func getCounter(meta *bolt.Bucket, key []byte) uint64 {
	v := meta.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putCounters(meta *bolt.Bucket, c counters) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{keyDropTel, c.dropTel}, {keyDropAl, c.dropAl}, {keyCorrupt, c.corrupt}} {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], kv.v)
		if err := meta.Put(kv.k, v[:]); err != nil {
			return fmt.Errorf("put counter %s: %w", kv.k, err)
		}
	}
	return nil
}
