package outbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedClock() func() time.Time { return func() time.Time { return t0 } }

func openDB(t testing.TB, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newOutbox(t testing.TB, o Options) (*Outbox, *bolt.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.db")
	db := openDB(t, path)
	t.Cleanup(func() { db.Close() })
	ob, err := Open(db, o, fixedClock())
	if err != nil {
		t.Fatal(err)
	}
	return ob, db, path
}

func mustAppend(t testing.TB, ob *Outbox, topic string, payload string, c Class) uint64 {
	t.Helper()
	id, err := ob.Append(topic, []byte(payload), c)
	if err != nil {
		t.Fatalf("Append(%q): %v", topic, err)
	}
	return id
}

func topics(t testing.TB, ob *Outbox) []string {
	t.Helper()
	msgs, err := ob.Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Topic)
	}
	return out
}

func TestFIFOPeekAck(t *testing.T) {
	ob, _, _ := newOutbox(t, Options{})
	var ids []uint64
	for i, c := range []Class{Telemetry, Alarm, Telemetry, Alarm, Telemetry} {
		ids = append(ids, mustAppend(t, ob, fmt.Sprintf("t/%d", i), "p", c))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ids not increasing: %v", ids)
		}
	}
	got, err := ob.Peek(2)
	if err != nil {
		t.Fatal(err)
	}
	want := []Message{
		{ID: ids[0], Topic: "t/0", Payload: []byte("p"), Class: Telemetry, Enqueued: t0},
		{ID: ids[1], Topic: "t/1", Payload: []byte("p"), Class: Alarm, Enqueued: t0},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("Peek(2) (-want +got):\n%s", diff)
	}
	if err := ob.Ack(ids[0], ids[2], 9999); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"t/1", "t/3", "t/4"}, topics(t, ob)); diff != "" {
		t.Errorf("after Ack (-want +got):\n%s", diff)
	}
	if err := ob.Ack(ids[0]); err != nil { // twice: not an error
		t.Fatal(err)
	}
	if diff := cmp.Diff(Stats{Len: 3, Bytes: 3 * 4}, ob.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if got, err := ob.Peek(0); err != nil || got != nil {
		t.Errorf("Peek(0) = %v, %v; want nil, nil", got, err)
	}
}

func TestDropPolicy(t *testing.T) {
	type op struct {
		name    string
		class   Class
		size    int // payload bytes
		dropped bool
	}
	T, A := Telemetry, Alarm
	// Topics are 2 bytes ("t1"), so a message of payload n is n+2 bytes.
	tests := []struct {
		name      string
		opts      Options
		ops       []op
		want      []string
		wantStats Stats
	}{
		{
			name: "count: oldest telemetry goes first",
			opts: Options{MaxMessages: 3},
			ops:  []op{{"a1", A, 0, false}, {"t1", T, 0, false}, {"t2", T, 0, false}, {"t3", T, 0, false}, {"t4", T, 0, false}},
			want: []string{"a1", "t3", "t4"},
		},
		{
			name: "count: alarm arriving drops telemetry, not alarms",
			opts: Options{MaxMessages: 3},
			ops:  []op{{"a1", A, 0, false}, {"t1", T, 0, false}, {"a2", A, 0, false}, {"a3", A, 0, false}},
			want: []string{"a1", "a2", "a3"},
		},
		{
			name: "count: alarms dropped oldest first only when no telemetry left",
			opts: Options{MaxMessages: 2},
			ops:  []op{{"a1", A, 0, false}, {"a2", A, 0, false}, {"a3", A, 0, false}},
			want: []string{"a2", "a3"},
		},
		{
			name: "count: telemetry into a queue full of alarms is itself dropped",
			opts: Options{MaxMessages: 2},
			ops:  []op{{"a1", A, 0, false}, {"a2", A, 0, false}, {"t1", T, 0, true}},
			want: []string{"a1", "a2"},
		},
		{
			name: "bytes: several telemetry dropped for one big alarm",
			opts: Options{MaxBytes: 30},
			ops:  []op{{"t1", T, 8, false}, {"a1", A, 8, false}, {"t2", T, 8, false}, {"a2", A, 14, false}},
			want: []string{"a1", "a2"},
		},
		{
			name: "bytes: telemetry that cannot fit without dropping an alarm",
			opts: Options{MaxBytes: 30},
			ops:  []op{{"t1", T, 3, false}, {"a1", A, 18, false}, {"t2", T, 12, true}},
			want: []string{"t1", "a1"},
		},
		{
			name: "bytes: alarm drops all telemetry, then the oldest alarm",
			opts: Options{MaxBytes: 30},
			ops:  []op{{"a1", A, 8, false}, {"t1", T, 3, false}, {"a2", A, 8, false}, {"a3", A, 10, false}},
			want: []string{"a2", "a3"},
		},
		{
			name: "exactly at the bounds drops nothing",
			opts: Options{MaxMessages: 2, MaxBytes: 20},
			ops:  []op{{"t1", T, 8, false}, {"t2", T, 8, false}},
			want: []string{"t1", "t2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ob, _, _ := newOutbox(t, tt.opts)
			var wantTel, wantAl uint64
			for _, o := range tt.ops {
				id, err := ob.Append(o.name, make([]byte, o.size), o.class)
				if err != nil {
					t.Fatalf("Append(%s): %v", o.name, err)
				}
				if got := id == 0; got != o.dropped {
					t.Errorf("Append(%s) dropped = %v, want %v", o.name, got, o.dropped)
				}
			}
			got := topics(t, ob)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("queue (-want +got):\n%s", diff)
			}
			kept := map[string]bool{}
			for _, n := range got {
				kept[n] = true
			}
			var bytes int64
			for _, o := range tt.ops {
				switch {
				case kept[o.name]:
					bytes += int64(len(o.name) + o.size)
				case o.class == Alarm:
					wantAl++
				default:
					wantTel++
				}
			}
			want := Stats{Len: len(tt.want), Bytes: bytes, Dropped: wantTel + wantAl, DroppedTelemetry: wantTel, DroppedAlarm: wantAl}
			if diff := cmp.Diff(want, ob.Stats()); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendErrors(t *testing.T) {
	ob, _, _ := newOutbox(t, Options{MaxBytes: 10})
	tests := []struct {
		name    string
		topic   string
		payload []byte
		class   Class
		want    error
	}{
		{"too large", "t", make([]byte, 10), Telemetry, ErrTooLarge},
		{"empty topic", "", nil, Telemetry, ErrBadMessage},
		{"bad class", "t", nil, Class(7), ErrBadMessage},
		{"topic over 64 KiB", strings.Repeat("x", 70000), nil, Alarm, ErrBadMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ob.Append(tt.topic, tt.payload, tt.class); !errors.Is(err, tt.want) {
				t.Errorf("Append: %v, want %v", err, tt.want)
			}
		})
	}
	if diff := cmp.Diff(Stats{}, ob.Stats()); diff != "" {
		t.Errorf("rejected appends changed Stats (-want +got):\n%s", diff)
	}
	if _, err := Open(nil, Options{}, nil); err == nil {
		t.Error("Open(nil db) succeeded")
	}
	_, db, _ := newOutbox(t, Options{})
	if _, err := Open(db, Options{MaxMessages: -1}, nil); err == nil {
		t.Error("Open with negative MaxMessages succeeded")
	}
}

func TestPersistAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	db := openDB(t, path)
	ob, err := Open(db, Options{MaxMessages: 3}, fixedClock())
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range 5 {
		last = mustAppend(t, ob, fmt.Sprintf("t/%d", i), "x", Telemetry)
	}
	mustAppend(t, ob, "a/0", "y", Alarm) // drops t/2
	if err := ob.Ack(last); err != nil { // t/4
		t.Fatal(err)
	}
	wantQueue, err := ob.Peek(10)
	if err != nil {
		t.Fatal(err)
	}
	wantStats := ob.Stats()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path)
	defer db.Close()
	ob, err = Open(db, Options{MaxMessages: 3}, fixedClock())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ob.Peek(10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantQueue, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("queue after reopen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantStats, ob.Stats()); diff != "" {
		t.Errorf("Stats after reopen (-want +got):\n%s", diff)
	}
	if wantStats.DroppedTelemetry != 3 {
		t.Errorf("DroppedTelemetry = %d, want 3", wantStats.DroppedTelemetry)
	}
	if id := mustAppend(t, ob, "t/new", "z", Telemetry); id <= last+1 {
		t.Errorf("id after reopen = %d, want > %d (IDs are never reused)", id, last+1)
	}
}

func TestReopenWithSmallerBoundsTrims(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	db := openDB(t, path)
	defer db.Close()
	ob, err := Open(db, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a1", "t1", "a2", "t2", "a3"} {
		c := Telemetry
		if n[0] == 'a' {
			c = Alarm
		}
		mustAppend(t, ob, n, "", c)
	}
	ob, err = Open(db, Options{MaxMessages: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a2", "a3"}, topics(t, ob)); diff != "" {
		t.Errorf("queue (-want +got):\n%s", diff)
	}
	want := Stats{Len: 2, Bytes: 4, Dropped: 3, DroppedTelemetry: 2, DroppedAlarm: 1}
	if diff := cmp.Diff(want, ob.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestCorruptEntriesSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	db := openDB(t, path)
	defer db.Close()
	ob, err := Open(db, Options{}, fixedClock())
	if err != nil {
		t.Fatal(err)
	}
	good1 := mustAppend(t, ob, "good/1", "a", Telemetry)
	good2 := mustAppend(t, ob, "good/2", "b", Alarm)
	flipped := encodeRecord(Message{Topic: "x", Payload: []byte("y"), Enqueued: t0})
	flipped[len(flipped)-6] ^= 0xff
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		for k, v := range map[string][]byte{
			string(encodeKey(good1 + 100)): []byte("garbage"),
			string(encodeKey(good1 + 101)): flipped,
			string(encodeKey(good1 + 102)): nil, // empty value
			"short-key":                    encodeRecord(Message{Topic: "x"}),
			string(encodeKey(0)):           encodeRecord(Message{Topic: "x"}),
		} {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ob, err = Open(db, Options{}, fixedClock())
	if err != nil {
		t.Fatalf("Open with corrupt records: %v", err)
	}
	if diff := cmp.Diff([]string{"good/1", "good/2"}, topics(t, ob)); diff != "" {
		t.Errorf("queue (-want +got):\n%s", diff)
	}
	if got := ob.Stats(); got.Corrupt != 5 || got.Dropped != 5 || got.Len != 2 {
		t.Errorf("Stats = %+v, want Corrupt 5, Dropped 5, Len 2", got)
	}

	// A record that goes bad after Open is skipped by Peek and counted too.
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketName).Put(encodeKey(good2), []byte{1, 2, 3})
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"good/1"}, topics(t, ob)); diff != "" {
		t.Errorf("queue (-want +got):\n%s", diff)
	}
	if got := ob.Stats(); got.Corrupt != 6 || got.Len != 1 {
		t.Errorf("Stats = %+v, want Corrupt 6, Len 1", got)
	}
	ob, err = Open(db, Options{}, fixedClock())
	if err != nil {
		t.Fatal(err)
	}
	if got := ob.Stats(); got.Corrupt != 6 || got.Len != 1 {
		t.Errorf("Stats after reopen = %+v, want Corrupt 6 (persisted), Len 1", got)
	}
}

func TestReady(t *testing.T) {
	ob, _, _ := newOutbox(t, Options{})
	select {
	case <-ob.Ready():
		t.Fatal("Ready before any Append")
	default:
	}
	mustAppend(t, ob, "t", "1", Telemetry)
	mustAppend(t, ob, "t", "2", Telemetry) // must not block though nobody reads
	select {
	case <-ob.Ready():
	default:
		t.Fatal("no Ready after Append")
	}
}

func TestConcurrentAppendDrain(t *testing.T) {
	ob, _, _ := newOutbox(t, Options{})
	const writers, each = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := ob.Append(fmt.Sprintf("w%d/%d", w, i), []byte("x"), Class(i%2)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := map[string]int{}
	lastID := uint64(0)
	for len(seen) < writers*each {
		msgs, err := ob.Peek(7)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			<-ob.Ready()
			continue
		}
		var ids []uint64
		for _, m := range msgs {
			if m.ID <= lastID {
				t.Fatalf("id %d after %d: not FIFO", m.ID, lastID)
			}
			lastID = m.ID
			seen[m.Topic]++
			ids = append(ids, m.ID)
		}
		if err := ob.Ack(ids...); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if got := ob.Stats(); got.Len != 0 || got.Bytes != 0 {
		t.Errorf("Stats after draining = %+v, want empty", got)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(Message{Topic: "dt/t", Payload: []byte(`{"t":21.5}`), Class: Telemetry, Enqueued: t0}))
	f.Add(encodeRecord(Message{Topic: "a", Class: Alarm}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeRecord(1, b)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		if m.Topic == "" || m.Class > Alarm {
			t.Fatalf("decoded invalid message %+v", m)
		}
		if got := encodeRecord(m); string(got) != string(b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, got)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	ob, _, _ := newOutbox(b, Options{MaxMessages: 1000})
	payload := []byte(`{"temperature":21.53,"humidity":40.2,"pressure":1013.2,"ts":1760000000123}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ob.Append("dt/chocbox/pi-RPI-0042/telemetry", payload, Telemetry); err != nil {
			b.Fatal(err)
		}
	}
}

// fill queues n messages in one transaction (Append commits one each),
// so that the drain benchmark measures Peek and Ack, not the refill.
func fill(tb testing.TB, ob *Outbox, n int, topic string, payload []byte) {
	tb.Helper()
	ob.mu.Lock()
	defer ob.mu.Unlock()
	var added []Message
	err := ob.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		for range n {
			id, err := b.NextSequence()
			if err != nil {
				return err
			}
			m := Message{ID: id, Topic: topic, Payload: payload, Enqueued: ob.now()}
			if err := b.Put(encodeKey(id), encodeRecord(m)); err != nil {
				return err
			}
			added = append(added, m)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range added {
		ob.addLocked(m.ID, m)
	}
}

func BenchmarkDrain(b *testing.B) {
	ob, _, _ := newOutbox(b, Options{})
	payload := []byte(`{"temperature":21.53,"humidity":40.2,"pressure":1013.2,"ts":1760000000123}`)
	b.ReportAllocs()
	for b.Loop() {
		if ob.Stats().Len < 100 {
			b.StopTimer()
			fill(b, ob, 5000, "dt/chocbox/pi-RPI-0042/telemetry", payload)
			b.StartTimer()
		}
		msgs, err := ob.Peek(100)
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]uint64, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		if err := ob.Ack(ids...); err != nil {
			b.Fatal(err)
		}
	}
}
