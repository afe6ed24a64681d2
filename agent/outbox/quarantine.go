package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The quarantine is where a message goes that the broker keeps refusing (a
// poison message: the connection is closed after its PUBLISH, again and
// again, typically because the IoT policy denies its topic). It is a
// dead-letter queue: the rest of the outbox flows while the message waits,
// on disk, for a person to list, retry or purge it. Messages keep their ID.

// Quarantined is a message set aside, with why and when.
type Quarantined struct {
	Message
	Reason string
	At     time.Time
}

// QuarantineStats counts the quarantine. Total and Purged survive
// restarts.
type QuarantineStats struct {
	Len    int    // messages in the quarantine now
	Bytes  int64  // their topic plus payload bytes
	Total  uint64 // messages ever quarantined
	Purged uint64 // messages a person deleted (queue or quarantine)
}

// ErrNotFound: no message with that ID where it was looked for.
var ErrNotFound = errors.New("outbox: no such message")

var (
	quarantineName = []byte("outbox_quarantine")
	keyQuarantined = []byte("quarantined")
	keyPurged      = []byte("purged")
)

// quarantineState is the Outbox's cached view of the quarantine, loaded
// on first use; guarded by Outbox.mu.
type quarantineState struct {
	loaded bool
	ids    map[uint64]int64 // id -> size
	bytes  int64
	total  uint64
	purged uint64
}

// Quarantine record layout (big endian), the value stored under the
// message's 8-byte ID key in the quarantine bucket:
//
//	[0]      format version (1)
//	[1:9]    quarantine time, Unix nanoseconds
//	[9:11]   reason length
//	[...]    reason
//	[...]    the outbox record (with its own checksum)
//	[last 4] CRC-32C of everything before it
const (
	qVersion   = 1
	qHeaderLen = 11
)

func encodeQuarantined(q Quarantined) []byte {
	reason := q.Reason
	if len(reason) > maxTopicLen {
		reason = reason[:maxTopicLen]
	}
	rec := encodeRecord(q.Message)
	b := make([]byte, qHeaderLen+len(reason)+len(rec)+crcLen)
	b[0] = qVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(q.At.UnixNano()))
	binary.BigEndian.PutUint16(b[9:11], uint16(len(reason)))
	n := qHeaderLen + copy(b[qHeaderLen:], reason)
	n += copy(b[n:], rec)
	binary.BigEndian.PutUint32(b[n:], crc32.Checksum(b[:n], castagnoli))
	return b
}

// decodeQuarantined parses a quarantine record; it copies what it keeps.
func decodeQuarantined(id uint64, v []byte) (Quarantined, error) {
	if len(v) < qHeaderLen+crcLen {
		return Quarantined{}, fmt.Errorf("%w: quarantine record of %d bytes", errCorrupt, len(v))
	}
	body := v[:len(v)-crcLen]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(v[len(body):]); got != want {
		return Quarantined{}, fmt.Errorf("%w: quarantine checksum %08x, want %08x", errCorrupt, got, want)
	}
	if body[0] != qVersion {
		return Quarantined{}, fmt.Errorf("%w: quarantine version %d", errCorrupt, body[0])
	}
	rl := int(binary.BigEndian.Uint16(body[9:11]))
	if qHeaderLen+rl > len(body) {
		return Quarantined{}, fmt.Errorf("%w: reason length %d", errCorrupt, rl)
	}
	m, err := decodeRecord(id, body[qHeaderLen+rl:])
	if err != nil {
		return Quarantined{}, err
	}
	return Quarantined{
		Message: m,
		Reason:  string(body[qHeaderLen : qHeaderLen+rl]),
		At:      time.Unix(0, int64(binary.BigEndian.Uint64(body[1:9]))),
	}, nil
}

// loadQuarantineLocked fills o.q from the database once.
func (o *Outbox) loadQuarantineLocked() error {
	if o.q.loaded {
		return nil
	}
	q := quarantineState{ids: map[uint64]int64{}}
	err := o.db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(metaName); meta != nil {
			q.total, q.purged = getCounter(meta, keyQuarantined), getCounter(meta, keyPurged)
		}
		b := tx.Bucket(quarantineName)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil || len(k) != keyLen {
				return nil
			}
			size := int64(len(v) - qHeaderLen - crcLen) // about right; exact after a decode
			if qq, err := decodeQuarantined(binary.BigEndian.Uint64(k), v); err == nil {
				size = int64(len(qq.Topic) + len(qq.Payload))
			}
			q.ids[binary.BigEndian.Uint64(k)] = size
			q.bytes += size
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("read quarantine: %w", err)
	}
	q.loaded = true
	o.q = q
	return nil
}

// QuarantineStats returns the quarantine's counters.
func (o *Outbox) QuarantineStats() (QuarantineStats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.loadQuarantineLocked(); err != nil {
		return QuarantineStats{}, err
	}
	return QuarantineStats{Len: len(o.q.ids), Bytes: o.q.bytes, Total: o.q.total, Purged: o.q.purged}, nil
}

// Quarantine moves queued message id to the quarantine, with reason, in
// one transaction, and returns it. A message no longer queued (it was
// acknowledged or purged meanwhile) is ErrNotFound.
func (o *Outbox) Quarantine(id uint64, reason string) (Message, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.loadQuarantineLocked(); err != nil {
		return Message{}, err
	}
	if _, ok := o.idx[id]; !ok {
		return Message{}, fmt.Errorf("quarantine %d: %w", id, ErrNotFound)
	}
	var m Message
	err := o.db.Update(func(tx *bolt.Tx) error {
		b, meta, err := buckets(tx)
		if err != nil {
			return err
		}
		v := b.Get(encodeKey(id))
		if v == nil {
			return ErrNotFound
		}
		if m, err = decodeRecord(id, v); err != nil {
			return err
		}
		qb, err := tx.CreateBucketIfNotExists(quarantineName)
		if err != nil {
			return fmt.Errorf("create quarantine bucket: %w", err)
		}
		if err := qb.Put(encodeKey(id), encodeQuarantined(Quarantined{Message: m, Reason: reason, At: o.now()})); err != nil {
			return fmt.Errorf("put: %w", err)
		}
		if err := b.Delete(encodeKey(id)); err != nil {
			return fmt.Errorf("delete from queue: %w", err)
		}
		return putCounter(meta, keyQuarantined, o.q.total+1)
	})
	if err != nil {
		return Message{}, fmt.Errorf("quarantine %d: %w", id, err)
	}
	o.removeLocked(id)
	size := int64(len(m.Topic) + len(m.Payload))
	o.q.ids[id] = size
	o.q.bytes += size
	o.q.total++
	return m, nil
}

// ListQuarantine returns the quarantined messages, oldest ID first. An
// unreadable record is removed and counted as corrupt, as Peek does.
func (o *Outbox) ListQuarantine() ([]Quarantined, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.loadQuarantineLocked(); err != nil {
		return nil, err
	}
	var out []Quarantined
	var bad []uint64
	err := o.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(quarantineName)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil || len(k) != keyLen {
				return nil
			}
			id := binary.BigEndian.Uint64(k)
			q, err := decodeQuarantined(id, v)
			if err != nil {
				bad = append(bad, id)
				return nil
			}
			out = append(out, q)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list quarantine: %w", err)
	}
	if len(bad) > 0 {
		err := o.db.Update(func(tx *bolt.Tx) error {
			qb, meta := tx.Bucket(quarantineName), tx.Bucket(metaName)
			if qb == nil || meta == nil {
				return errors.New("bucket missing")
			}
			for _, id := range bad {
				if err := qb.Delete(encodeKey(id)); err != nil {
					return err
				}
			}
			next := o.cnt
			next.corrupt += uint64(len(bad))
			return putCounters(meta, next)
		})
		if err != nil {
			return out, fmt.Errorf("list quarantine: remove unreadable records: %w", err)
		}
		o.cnt.corrupt += uint64(len(bad))
		o.forgetQuarantinedLocked(bad)
	}
	return out, nil
}

func (o *Outbox) forgetQuarantinedLocked(ids []uint64) {
	for _, id := range ids {
		if size, ok := o.q.ids[id]; ok {
			delete(o.q.ids, id)
			o.q.bytes -= size
		}
	}
}

// Retry moves quarantined messages back into the queue under their own
// IDs (so they go out first), all of them when ids is empty. It returns
// what it moved; an ID not in the quarantine is ErrNotFound and moves
// nothing. The queue's bounds apply as for Append: room is made by the
// usual drop policy, and what that drops is counted.
func (o *Outbox) Retry(ids ...uint64) ([]Message, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids, err := o.pickQuarantinedLocked("retry", ids)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var moved []Message
	var next counters
	var victims []uint64
	err = o.db.Update(func(tx *bolt.Tx) error {
		b, _, err := buckets(tx)
		if err != nil {
			return err
		}
		qb := tx.Bucket(quarantineName)
		if qb == nil {
			return errors.New("quarantine bucket missing")
		}
		var add int64
		for _, id := range ids {
			q, err := decodeQuarantined(id, qb.Get(encodeKey(id)))
			if err != nil {
				return fmt.Errorf("message %d: %w", id, err)
			}
			moved = append(moved, q.Message)
			add += int64(len(q.Topic) + len(q.Payload))
		}
		victims, _ = o.planLocked(len(moved), add, Alarm, false)
		if next, err = o.dropTx(b, victims); err != nil {
			return err
		}
		for _, m := range moved {
			if err := b.Put(encodeKey(m.ID), encodeRecord(m)); err != nil {
				return fmt.Errorf("put %d: %w", m.ID, err)
			}
			if err := qb.Delete(encodeKey(m.ID)); err != nil {
				return fmt.Errorf("delete %d from quarantine: %w", m.ID, err)
			}
		}
		if next == o.cnt {
			return nil
		}
		return putCounters(tx.Bucket(metaName), next)
	})
	if err != nil {
		return nil, fmt.Errorf("retry: %w", err)
	}
	o.cnt = next
	o.removeLocked(victims...)
	for _, m := range moved {
		o.addLocked(m.ID, m)
	}
	o.forgetQuarantinedLocked(ids)
	select {
	case o.ready <- struct{}{}:
	default:
	}
	return moved, nil
}

// pickQuarantinedLocked loads the quarantine, checks that every id is in
// it (all of them when ids is empty) and returns them sorted; op names the
// caller in the error.
func (o *Outbox) pickQuarantinedLocked(op string, ids []uint64) ([]uint64, error) {
	if err := o.loadQuarantineLocked(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		for id := range o.q.ids {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		if _, ok := o.q.ids[id]; !ok {
			return nil, fmt.Errorf("%s: message %d is not in the quarantine: %w", op, id, ErrNotFound)
		}
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// PurgeQuarantine deletes quarantined messages, all of them when ids is
// empty, and counts them as purged. An ID not in the quarantine is
// ErrNotFound and deletes nothing.
func (o *Outbox) PurgeQuarantine(ids ...uint64) ([]uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids, err := o.pickQuarantinedLocked("purge", ids)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	err = o.db.Update(func(tx *bolt.Tx) error {
		qb, meta := tx.Bucket(quarantineName), tx.Bucket(metaName)
		if qb == nil || meta == nil {
			return errors.New("bucket missing")
		}
		for _, id := range ids {
			if err := qb.Delete(encodeKey(id)); err != nil {
				return fmt.Errorf("delete %d: %w", id, err)
			}
		}
		return putCounter(meta, keyPurged, o.q.purged+uint64(len(ids)))
	})
	if err != nil {
		return nil, fmt.Errorf("purge: %w", err)
	}
	o.forgetQuarantinedLocked(ids)
	o.q.purged += uint64(len(ids))
	return ids, nil
}

// Purge deletes queued messages (a person's decision: they are counted as
// purged, not as dropped). An ID not queued is ErrNotFound and deletes
// nothing.
func (o *Outbox) Purge(ids ...uint64) ([]uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.loadQuarantineLocked(); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if _, ok := o.idx[id]; !ok {
			return nil, fmt.Errorf("purge: message %d is not queued: %w", id, ErrNotFound)
		}
	}
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	if len(ids) == 0 {
		return nil, nil
	}
	err := o.db.Update(func(tx *bolt.Tx) error {
		b, meta, err := buckets(tx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := b.Delete(encodeKey(id)); err != nil {
				return fmt.Errorf("delete %d: %w", id, err)
			}
		}
		return putCounter(meta, keyPurged, o.q.purged+uint64(len(ids)))
	})
	if err != nil {
		return nil, fmt.Errorf("purge: %w", err)
	}
	o.removeLocked(ids...)
	o.q.purged += uint64(len(ids))
	return ids, nil
}

// QueuedIDs returns the IDs of every queued message, ascending.
func (o *Outbox) QueuedIDs() []uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := make([]uint64, 0, len(o.idx))
	for id := range o.idx {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func putCounter(meta *bolt.Bucket, key []byte, v uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	if err := meta.Put(key, b[:]); err != nil {
		return fmt.Errorf("put counter %s: %w", key, err)
	}
	return nil
}
