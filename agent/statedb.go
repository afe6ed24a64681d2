package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/iotagent/iotagent/agent/outbox"
	"github.com/iotagent/iotagent/internal/boltscan"
	"github.com/iotagent/iotagent/internal/statefile"
)

// The agent's bbolt database, STATE/agent.db: the outbox (buckets outbox
// and outbox_meta) and whatever else the agent keeps there.
//
// bbolt trusts its file; a damaged one makes it fail to open
// ("invalid database"), panic or fault. openStateDB therefore checks the
// file before bbolt touches it (internal/boltscan: every page it would
// read lies within the file and says what it is), then lets bbolt check
// it too (read-only, tx.Check), and only then opens it for writing. A file
// that fails any of this, or that is empty (bbolt never leaves an empty
// file once it has initialised it), is moved aside; everything that still
// reads in it is copied into a new database, outbox records only when
// their checksum holds; the event is recorded in the state journal with
// the number of messages salvaged and lost.

// errInUse: another process holds agent.db.
var errInUse = errors.New("in use by another process")

// lockTimeout bounds the wait for agent.db's lock.
const lockTimeout = time.Second

// openStateDB opens (creating if needed) the database at path, recovering
// it as described above. It returns the recovery event, nil when there
// was none.
func openStateDB(stateDir, path string, now time.Time) (*bolt.DB, *statefile.Event, error) {
	reason, err := checkStateDB(path)
	if err != nil {
		return nil, nil, err
	}
	if reason == "" {
		db, err := openBolt(path, false)
		if err == nil {
			return db, nil, nil
		}
		if errors.Is(err, errInUse) || errors.Is(err, fs.ErrPermission) {
			return nil, nil, err
		}
		reason = err.Error()
	}
	ev := statefile.Event{File: path, At: now.UTC(), Reason: reason}
	moved, err := statefile.MoveAside(path, ev.At)
	if err != nil {
		ev.Action = "could not move it aside: " + err.Error()
		_ = statefile.Record(stateDir, ev)
		return nil, &ev, fmt.Errorf("%s: %s: %w", path, reason, err)
	}
	ev.MovedTo = moved
	db, err := openBolt(path, false)
	if err != nil {
		ev.Action = "could not start a new database: " + err.Error()
		_ = statefile.Record(stateDir, ev)
		return nil, &ev, fmt.Errorf("new %s: %w", path, err)
	}
	ev.Action = "started a new database"
	salvageStateDB(db, moved, &ev)
	if err := statefile.Record(stateDir, ev); err != nil {
		db.Close()
		return nil, &ev, err
	}
	return db, &ev, nil
}

// checkStateDB returns why path cannot be used as it is, "" when it can
// (or does not exist). The error is for what is not damage: a file that
// cannot be read for permission, or that another process holds.
func checkStateDB(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return "empty file (bbolt never leaves one: it was truncated or never written out)", nil
	}
	rep, err := boltscan.Scan(f, fi.Size(), false)
	if err != nil || !rep.Sound() {
		return "damaged: " + problems(rep.Problems), nil
	}
	db, err := openBolt(path, true)
	if err != nil {
		if errors.Is(err, errInUse) {
			return "", err
		}
		return err.Error(), nil
	}
	defer db.Close()
	var found []string
	err = safely(func() error {
		return db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				found = append(found, err.Error())
			}
			return nil
		})
	})
	if err != nil {
		found = append(found, err.Error())
	}
	if len(found) > 0 {
		return "damaged: " + problems(found), nil
	}
	return "", nil
}

func problems(ps []string) string {
	if len(ps) == 0 {
		return "unreadable"
	}
	s := strings.Join(ps[:min(len(ps), 3)], "; ")
	if len(ps) > 3 {
		s += fmt.Sprintf("; and %d more", len(ps)-3)
	}
	return s
}

// openBolt opens path with bbolt, turning a panic or a fault into an
// error and a lock held elsewhere into errInUse naming the holder.
func openBolt(path string, readOnly bool) (db *bolt.DB, err error) {
	err = safely(func() error {
		var oerr error
		db, oerr = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: readOnly})
		return oerr
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		who := statefile.LockHolder(path)
		if who == "" {
			who = "another process"
		}
		return nil, fmt.Errorf("%s is %w: %s holds its lock (one iotagent per state dir; stop it or use another state_dir)", path, errInUse, who)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// safely runs f, turning a panic, or a memory fault on a mapped file,
// into an error.
func safely(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked: %v", r)
		}
	}()
	return f()
}

// salvageStateDB copies what still reads in the moved-aside file into db
// and counts the outbox messages kept and lost in ev.
func salvageStateDB(db *bolt.DB, moved string, ev *statefile.Event) {
	f, err := os.Open(moved)
	if err != nil {
		ev.LostUnknown = true
		ev.Action += "; nothing salvaged: " + err.Error()
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		ev.LostUnknown = true
		ev.Action += "; nothing to salvage"
		return
	}
	rep, err := boltscan.Scan(f, fi.Size(), true)
	if err != nil {
		ev.LostUnknown = true
		ev.Action += "; nothing salvaged (no valid meta page)"
		return
	}
	var ob *boltscan.Bucket
	for _, b := range rep.Root.Buckets {
		if string(b.Name) == outbox.Bucket {
			ob = b
		}
	}
	switch {
	case ob != nil:
		ev.LostUnknown = ob.Incomplete
		ev.Lost += ob.Unreadable
	case rep.Root.Incomplete || rep.Root.Unreadable > 0:
		ev.LostUnknown = true // the outbox may be in what did not read
	}
	if rep.OneMeta {
		ev.LostUnknown = true // the newest transaction may be in the bad meta page
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range rep.Root.Buckets {
			nb, err := tx.CreateBucketIfNotExists(b.Name)
			if err != nil {
				return fmt.Errorf("bucket %q: %w", b.Name, err)
			}
			if err := restoreBucket(nb, b, b == ob, ev); err != nil {
				return fmt.Errorf("bucket %q: %w", b.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		ev.Salvaged, ev.Lost, ev.LostUnknown = 0, 0, true
		ev.Action += "; salvage failed: " + err.Error()
		return
	}
	ev.Action += fmt.Sprintf("; copied what still reads of %d buckets", len(rep.Root.Buckets))
}

func restoreBucket(nb *bolt.Bucket, b *boltscan.Bucket, isOutbox bool, ev *statefile.Event) error {
	for _, kv := range b.KVs {
		if isOutbox {
			if !outbox.ValidRecord(kv.Key, kv.Value) {
				ev.Lost++
				continue
			}
			ev.Salvaged++
		}
		if len(kv.Key) == 0 || len(kv.Key) > bolt.MaxKeySize || len(kv.Value) > bolt.MaxValueSize {
			continue
		}
		if err := nb.Put(kv.Key, kv.Value); err != nil {
			return err
		}
	}
	for _, sub := range b.Buckets {
		sb, err := nb.CreateBucketIfNotExists(sub.Name)
		if err != nil {
			continue // a key of that name was copied: keep the key
		}
		if err := restoreBucket(sb, sub, false, ev); err != nil {
			return err
		}
	}
	if b.Sequence > nb.Sequence() {
		return nb.SetSequence(b.Sequence)
	}
	return nil
}
