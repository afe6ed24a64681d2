package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/iotagent/iotagent/agent/outbox"
	"github.com/iotagent/iotagent/internal/statefile"
)

var dbT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// writeStore makes STATE/agent.db through the agent's own open path with n
// messages, each queued in its own transaction as the agent does.
func writeStore(t *testing.T, n int) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "agent.db")
	db, ev, err := openStateDB(dir, path, dbT0)
	if err != nil || ev != nil {
		t.Fatalf("open a new store: %v, event %+v", err, ev)
	}
	ob, err := outbox.Open(db, outbox.Options{}, func() time.Time { return dbT0 })
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		class := outbox.Telemetry
		if i%3 == 0 {
			class = outbox.Alarm
		}
		payload := fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 150))
		if _, err := ob.Append(fmt.Sprintf("dt/box/%d", i), []byte(payload), class); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// layout is where bbolt itself says the pages of a sound store are.
type layout struct {
	psz, hwm                 int
	root, outbox, freelist   int
	outboxType               string
	outboxCount              int
	maxLive                  int // the highest page in use
	meta0Newer               bool
	children, childrenCounts []int // the outbox root's children when it is a branch
}

func storeLayout(t *testing.T, path string) layout {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var l layout
	l.psz = db.Info().PageSize
	err = db.View(func(tx *bolt.Tx) error {
		l.root = int(tx.Cursor().Bucket().Root())
		l.outbox = int(tx.Bucket([]byte(outbox.Bucket)).Root())
		for id := 0; ; id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p == nil {
				l.hwm = id
				break
			}
			if p.Type == "freelist" {
				l.freelist = id
			}
			if p.Type != "free" {
				l.maxLive = id + p.OverflowCount
			}
			if id == l.outbox {
				l.outboxType, l.outboxCount = p.Type, p.Count
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b := readFile(t, path)
	l.meta0Newer = binary.LittleEndian.Uint64(b[16+48:]) > binary.LittleEndian.Uint64(b[l.psz+16+48:])
	if l.outboxType == "branch" {
		db.View(func(tx *bolt.Tx) error {
			for i := 0; i < l.outboxCount; i++ {
				child := int(binary.LittleEndian.Uint64(b[l.outbox*l.psz+16+i*16+8:]))
				p, _ := tx.Page(child)
				l.children = append(l.children, child)
				l.childrenCounts = append(l.childrenCounts, p.Count)
			}
			return nil
		})
	}
	return l
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func patch(t *testing.T, path string, f func(b []byte) []byte) {
	t.Helper()
	if err := os.WriteFile(path, f(readFile(t, path)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// want is what reopening a damaged store must give.
type want struct {
	moved    bool // moved aside and recovered
	salvaged int  // messages queued afterwards
	lost     int
	unknown  bool
	corrupt  uint64 // records outbox.Open found bad (not moved)
}

// TestStateDBCorruptions damages real bbolt files in every way the field
// does and reopens them through the agent's open path: no panic, no
// fault, the agent gets a working store, the damaged file is kept, the
// salvaged count is exact and every loss is counted or flagged unknown.
func TestStateDBCorruptions(t *testing.T) {
	type tcase struct {
		name   string
		n      int
		damage func(t *testing.T, path string, l layout) want
	}
	setU64 := func(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
	cases := []tcase{
		{"random bytes over the whole file", 12, func(t *testing.T, path string, l layout) want {
			r := rand.New(rand.NewPCG(1, 2))
			patch(t, path, func(b []byte) []byte {
				for i := range b {
					b[i] = byte(r.Uint32())
				}
				return b
			})
			return want{moved: true, unknown: true}
		}},
		{"zero length", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { return nil })
			return want{moved: true, unknown: true}
		}},
		{"truncated inside meta page 0", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { return b[:100] })
			return want{moved: true, unknown: true}
		}},
		{"truncated inside meta page 1", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { return b[:l.psz+40] })
			return want{moved: true, unknown: true}
		}},
		{"truncated inside the outbox page", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { return b[:l.outbox*l.psz+100] })
			return want{moved: true, unknown: true}
		}},
		{"truncated after the last page in use", 12, func(t *testing.T, path string, l layout) want {
			cut := (l.maxLive + 1) * l.psz
			patch(t, path, func(b []byte) []byte { return b[:cut] })
			if cut >= l.hwm*l.psz {
				return want{salvaged: 12} // nothing in use was cut: nothing to recover
			}
			return want{moved: true, salvaged: 12}
		}},
		{"meta page 0 checksum flipped", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { b[16+56] ^= 0xff; return b })
			if l.meta0Newer {
				return want{moved: true, salvaged: 11, unknown: true} // the last append was in the bad meta's transaction
			}
			return want{moved: true, salvaged: 12, unknown: true}
		}},
		{"both meta pages flipped", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { b[16] ^= 0xff; b[l.psz+16] ^= 0xff; return b })
			return want{moved: true, unknown: true}
		}},
		{"freelist page flags flipped", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { b[l.freelist*l.psz+8] = 0x02; return b })
			return want{moved: true, salvaged: 12}
		}},
		{"freelist frees the outbox page", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte {
				off := l.freelist * l.psz
				binary.LittleEndian.PutUint16(b[off+10:], 1)
				setU64(b, off+16, uint64(l.outbox))
				return b
			})
			return want{moved: true, salvaged: 12}
		}},
		{"leaf page count flipped", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { b[l.outbox*l.psz+11] ^= 0xff; return b })
			return want{moved: true, unknown: true}
		}},
		{"leaf element offset flipped", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { b[l.outbox*l.psz+16+3*16+7] ^= 0x7f; return b })
			return want{moved: true, salvaged: 11, lost: 1}
		}},
		{"leaf value flipped", 12, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte {
				off := l.outbox*l.psz + 16 + 5*16
				pos := int(binary.LittleEndian.Uint32(b[off+4:]))
				b[off+pos+8+20] ^= 0x01 // inside record 6's value, past the header
				return b
			})
			return want{salvaged: 11, corrupt: 1} // the file is sound: outbox.Open drops and counts the record
		}},
		{"branch page flags flipped", 400, func(t *testing.T, path string, l layout) want {
			if l.outboxType != "branch" {
				t.Fatalf("outbox root is a %s page; want a branch", l.outboxType)
			}
			patch(t, path, func(b []byte) []byte { b[l.outbox*l.psz+8] = 0x20; return b })
			return want{moved: true, unknown: true}
		}},
		{"branch element points past the end", 400, func(t *testing.T, path string, l layout) want {
			patch(t, path, func(b []byte) []byte { setU64(b, l.outbox*l.psz+16+2*16+8, uint64(l.hwm+100)); return b })
			return want{moved: true, salvaged: 400 - l.childrenCounts[2], unknown: true}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := writeStore(t, tc.n)
			l := storeLayout(t, path)
			w := tc.damage(t, path, l)
			damaged := readFile(t, path)

			at := dbT0.Add(time.Hour)
			db, ev, err := openStateDB(dir, path, at)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer db.Close()
			ob, err := outbox.Open(db, outbox.Options{}, func() time.Time { return at })
			if err != nil {
				t.Fatalf("outbox: %v", err)
			}
			st := ob.Stats()
			if st.Len != w.salvaged || st.Corrupt != w.corrupt {
				t.Errorf("queued %d (corrupt %d), want %d (corrupt %d)", st.Len, st.Corrupt, w.salvaged, w.corrupt)
			}
			evs, err := statefile.Events(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !w.moved {
				if ev != nil || len(evs) != 0 {
					t.Fatalf("recovered a sound file: %+v", ev)
				}
				return
			}
			if ev == nil || len(evs) != 1 {
				t.Fatalf("event %+v, journal %+v: want one recovery", ev, evs)
			}
			got := evs[0]
			wantMoved := statefile.MovedAsideName(path, at)
			if got.File != path || got.MovedTo != wantMoved || !got.At.Equal(at) || got.Reason == "" {
				t.Errorf("event %+v: want %s moved to %s at %v with a reason", got, path, wantMoved, at)
			}
			if got.Salvaged != w.salvaged || got.Lost != w.lost || got.LostUnknown != w.unknown {
				t.Errorf("salvaged %d, lost %d, unknown %v; want %d, %d, %v (%s)", got.Salvaged, got.Lost, got.LostUnknown, w.salvaged, w.lost, w.unknown, got.Summary())
			}
			if b := readFile(t, wantMoved); string(b) != string(damaged) {
				t.Errorf("the moved copy is not the damaged file")
			}
			// The new store works and is sound: append, reopen, no recovery.
			if _, err := ob.Append("dt/box/after", []byte("{}"), outbox.Alarm); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db2, ev2, err := openStateDB(dir, path, at.Add(time.Hour))
			if err != nil || ev2 != nil {
				t.Fatalf("reopen the new store: %v, %+v", err, ev2)
			}
			defer db2.Close()
			ob2, err := outbox.Open(db2, outbox.Options{}, nil)
			if err != nil || ob2.Stats().Len != w.salvaged+1 {
				t.Fatalf("reopened: %v, %d queued, want %d", err, ob2.Stats().Len, w.salvaged+1)
			}
		})
	}
}

// TestStateDBSalvageKeepsOrderAndCounters: salvaged messages keep their
// IDs, topics and payloads, new IDs continue above them, and the drop
// counters survive.
func TestStateDBSalvageKeepsOrderAndCounters(t *testing.T) {
	dir, path := writeStore(t, 12)
	l := storeLayout(t, path)
	patch(t, path, func(b []byte) []byte { b[l.freelist*l.psz+8] = 0x02; return b })
	db, ev, err := openStateDB(dir, path, dbT0)
	if err != nil || ev == nil {
		t.Fatalf("open: %v, %+v", err, ev)
	}
	defer db.Close()
	ob, err := outbox.Open(db, outbox.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ob.Peek(100)
	if err != nil || len(msgs) != 12 {
		t.Fatalf("peek: %v, %d", err, len(msgs))
	}
	for i, m := range msgs {
		if m.ID != uint64(i+1) || m.Topic != fmt.Sprintf("dt/box/%d", i) || !strings.HasPrefix(string(m.Payload), fmt.Sprintf(`{"n":%d,`, i)) {
			t.Fatalf("message %d: %d %s %.20s", i, m.ID, m.Topic, m.Payload)
		}
	}
	id, err := ob.Append("dt/box/new", []byte("{}"), outbox.Telemetry)
	if err != nil || id != 13 {
		t.Fatalf("next id %d, %v; want 13", id, err)
	}
}

// TestStateDBInUse: a second opener waits about a second, then names the
// process that holds the database instead of hanging.
func TestStateDBInUse(t *testing.T) {
	dir, path := writeStore(t, 1)
	db, _, err := openStateDB(dir, path, dbT0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	_, ev, err := openStateDB(dir, path, dbT0)
	if !errors.Is(err, errInUse) || ev != nil {
		t.Fatalf("second open: %v, %+v; want errInUse and no recovery", err, ev)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if _, serr := os.Stat("/proc/locks"); serr == nil && !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("error %q does not name pid %d", err, os.Getpid())
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
}

// FuzzOpenStateDB: whatever bytes agent.db holds, the agent's open path
// neither panics nor faults, and it always ends with a working outbox.
func FuzzOpenStateDB(f *testing.F) {
	seedDir := f.TempDir()
	path := filepath.Join(seedDir, "agent.db")
	db, _, err := openStateDB(seedDir, path, dbT0)
	if err != nil {
		f.Fatal(err)
	}
	ob, _ := outbox.Open(db, outbox.Options{}, nil)
	for i := 0; i < 12; i++ {
		ob.Append("dt/x", []byte(strings.Repeat("p", 100)), outbox.Alarm)
	}
	db.Close()
	seed, _ := os.ReadFile(path)
	f.Add(seed)
	f.Add([]byte{})
	f.Add(seed[:4096])
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "agent.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		db, _, err := openStateDB(dir, path, dbT0)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer db.Close()
		ob, err := outbox.Open(db, outbox.Options{}, nil)
		if err != nil {
			t.Fatalf("outbox: %v", err)
		}
		if _, err := ob.Append("dt/after", []byte("{}"), outbox.Alarm); err != nil {
			t.Fatalf("append: %v", err)
		}
	})
}
