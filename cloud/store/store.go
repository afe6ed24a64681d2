// Package store is iotsim's embedded database: a thin layer over bbolt with
// named buckets of string keys, so that every service keeps its state in one
// file in the data dir and that state survives a restart.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrNotFound is returned by Get when the key is absent.
var ErrNotFound = errors.New("store: not found")

// ErrLocked is returned by Open when another process holds the database.
var ErrLocked = errors.New("store: database is in use by another process")

// DB is an open database. It is safe for concurrent use.
type DB struct {
	b *bolt.DB

	batchMu   sync.Mutex
	pending   []*batchCall // Batch calls waiting for the next commit
	committer bool         // a goroutine is committing batches
}

// Open opens (creating if needed) the database file at path. If another
// process holds it, Open waits up to lockWait and then returns ErrLocked.
func Open(path string, lockWait time.Duration) (*DB, error) {
	if lockWait <= 0 {
		lockWait = time.Second
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", filepath.Base(path), ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &DB{b: b}, nil
}

// Close closes the database. It is safe to call more than once.
func (d *DB) Close() error { return d.b.Close() }

// Get returns a copy of the value at bucket/key, or ErrNotFound.
func (d *DB) Get(bucket, key string) ([]byte, error) {
	var out []byte
	err := d.b.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(bucket))
		if bk == nil {
			return ErrNotFound
		}
		v := bk.Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// Put stores val at bucket/key, creating the bucket if needed.
func (d *DB) Put(bucket, key string, val []byte) error {
	return d.b.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return bk.Put([]byte(key), val)
	})
}

// Delete removes bucket/key. Deleting an absent key is not an error.
func (d *DB) Delete(bucket, key string) error {
	return d.b.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(bucket))
		if bk == nil {
			return nil
		}
		return bk.Delete([]byte(key))
	})
}

// ForEach calls fn, in key order, for every key in bucket that starts with
// prefix. The value is only valid during the call.
func (d *DB) ForEach(bucket, prefix string, fn func(key string, val []byte) error) error {
	return d.b.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(bucket))
		if bk == nil {
			return nil
		}
		c := bk.Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
			if err := fn(string(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Tx is a read-write transaction over several buckets; see DB.Update.
// One from DB.View is read-only: its Put and Delete fail.
type Tx struct{ tx *bolt.Tx }

// View runs fn in one read-only transaction: its reads see one state of
// the database, for the cost of one transaction instead of one per Get.
func (d *DB) View(fn func(tx *Tx) error) error {
	return d.b.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Update runs fn in one read-write transaction: all its writes land
// together or not at all.
func (d *DB) Update(fn func(tx *Tx) error) error {
	return d.b.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Batch is Update for many concurrent callers, with a group commit: a
// call made while no commit is under way commits at once, alone; the
// calls that arrive while one is under way go together into the next
// transaction, with one commit (one fsync) for all of them. So a lone
// caller waits no longer than with Update, and under load the commits
// carry many callers' changes each. Each caller gets its own fn's error,
// and a fn that fails leaves nothing behind. fn may run more than once
// (when another fn of its batch fails, the batch runs again without that
// one, which then runs alone), so it must set its results afresh each
// time and have no other effect than its writes to tx.
func (d *DB) Batch(fn func(tx *Tx) error) error {
	c := &batchCall{fn: fn, done: make(chan error, 1)}
	d.batchMu.Lock()
	d.pending = append(d.pending, c)
	if !d.committer {
		d.committer = true
		go d.commitBatches()
	}
	d.batchMu.Unlock()
	return <-c.done
}

type batchCall struct {
	fn   func(tx *Tx) error
	done chan error
}

// commitBatches commits the pending calls, batch after batch, until none
// is left.
func (d *DB) commitBatches() {
	for {
		d.batchMu.Lock()
		calls := d.pending
		d.pending = nil
		if len(calls) == 0 {
			d.committer = false
			d.batchMu.Unlock()
			return
		}
		d.batchMu.Unlock()
		d.commitBatch(calls)
	}
}

// commitBatch runs calls in one transaction. A call whose fn fails is taken
// out, the others are run again, and it runs alone so that its error is
// its own.
func (d *DB) commitBatch(calls []*batchCall) {
	for len(calls) > 0 {
		failed := -1
		err := d.b.Update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := safeCall(c.fn, &Tx{tx: tx}); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range calls {
				c.done <- err // nil, or the commit's own error
			}
			return
		}
		c := calls[failed]
		calls = append(calls[:failed:failed], calls[failed+1:]...)
		c.done <- d.b.Update(func(tx *bolt.Tx) error { return safeCall(c.fn, &Tx{tx: tx}) })
	}
}

// safeCall runs fn, turning a panic into an error so that one caller's bug
// does not leave the others of its batch waiting forever.
func safeCall(fn func(tx *Tx) error, tx *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: batch function panicked: %v", p)
		}
	}()
	return fn(tx)
}

// Get is DB.Get inside a transaction.
func (t *Tx) Get(bucket, key string) ([]byte, error) {
	bk := t.tx.Bucket([]byte(bucket))
	if bk == nil {
		return nil, ErrNotFound
	}
	v := bk.Get([]byte(key))
	if v == nil {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

// Put is DB.Put inside a transaction.
func (t *Tx) Put(bucket, key string, val []byte) error {
	bk, err := t.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return err
	}
	return bk.Put([]byte(key), val)
}

// Delete is DB.Delete inside a transaction.
func (t *Tx) Delete(bucket, key string) error {
	bk := t.tx.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	return bk.Delete([]byte(key))
}

// GetJSON decodes the JSON value at bucket/key into v.
func (d *DB) GetJSON(bucket, key string, v any) error {
	b, err := d.Get(bucket, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return nil
}

// PutJSON stores v as JSON at bucket/key.
func (d *DB) PutJSON(bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return d.Put(bucket, key, b)
}

// ForEach is DB.ForEach inside a transaction.
func (t *Tx) ForEach(bucket, prefix string, fn func(key string, val []byte) error) error {
	bk := t.tx.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	c := bk.Cursor()
	for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}
