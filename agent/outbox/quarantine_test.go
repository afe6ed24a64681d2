package outbox

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

func TestQuarantineRetryPurge(t *testing.T) {
	ob, db, _ := newOutbox(t, Options{})
	a := mustAppend(t, ob, "telemetry/box", "a", Telemetry)
	poison := mustAppend(t, ob, "telemetry/old-box", "p", Telemetry)
	c := mustAppend(t, ob, "alarms/box", "c", Alarm)

	m, err := ob.Quarantine(poison, "closed after PUBLISH 3 times")
	if err != nil {
		t.Fatal(err)
	}
	if m.Topic != "telemetry/old-box" || string(m.Payload) != "p" {
		t.Errorf("Quarantine returned %+v", m)
	}
	if got, want := topics(t, ob), []string{"telemetry/box", "alarms/box"}; !cmp.Equal(got, want) {
		t.Errorf("queue after quarantine %v, want %v", got, want)
	}
	if _, err := ob.Quarantine(poison, "again"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Quarantine: %v, want ErrNotFound", err)
	}
	qs, err := ob.QuarantineStats()
	if err != nil {
		t.Fatal(err)
	}
	if want := (QuarantineStats{Len: 1, Bytes: int64(len("telemetry/old-box") + 1), Total: 1}); qs != want {
		t.Errorf("QuarantineStats %+v, want %+v", qs, want)
	}

	// The quarantine and its counters survive a reopen.
	ob2, err := Open(db, Options{}, fixedClock())
	if err != nil {
		t.Fatal(err)
	}
	list, err := ob2.ListQuarantine()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != poison || list[0].Reason != "closed after PUBLISH 3 times" || !list[0].At.Equal(t0) || string(list[0].Payload) != "p" {
		t.Fatalf("ListQuarantine after reopen = %+v", list)
	}
	if n := ob2.Stats().Len; n != 2 {
		t.Errorf("queue after reopen has %d, want 2", n)
	}

	if _, err := ob2.Retry(a); !errors.Is(err, ErrNotFound) {
		t.Errorf("Retry of a queued id: %v, want ErrNotFound", err)
	}
	moved, err := ob2.Retry()
	if err != nil {
		t.Fatal(err)
	}
	if len(moved) != 1 || moved[0].ID != poison {
		t.Fatalf("Retry moved %+v", moved)
	}
	// It keeps its ID, so it goes out before what was queued after it.
	msgs, _ := ob2.Peek(10)
	var ids []uint64
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	if want := []uint64{a, poison, c}; !cmp.Equal(ids, want) {
		t.Errorf("queue after retry %v, want %v", ids, want)
	}
	select {
	case <-ob2.Ready():
	default:
		t.Error("Retry did not signal Ready")
	}

	if _, err := ob2.Quarantine(poison, "again"); err != nil {
		t.Fatal(err)
	}
	if _, err := ob2.PurgeQuarantine(poison + 100); !errors.Is(err, ErrNotFound) {
		t.Errorf("PurgeQuarantine unknown: %v", err)
	}
	if got, err := ob2.PurgeQuarantine(); err != nil || !cmp.Equal(got, []uint64{poison}) {
		t.Errorf("PurgeQuarantine() = %v, %v", got, err)
	}
	if got, err := ob2.Purge(c); err != nil || !cmp.Equal(got, []uint64{c}) {
		t.Errorf("Purge(%d) = %v, %v", c, got, err)
	}
	if _, err := ob2.Purge(c); !errors.Is(err, ErrNotFound) {
		t.Errorf("Purge twice: %v", err)
	}
	qs, _ = ob2.QuarantineStats()
	if want := (QuarantineStats{Total: 2, Purged: 2}); qs != want {
		t.Errorf("QuarantineStats %+v, want %+v", qs, want)
	}
	if st := ob2.Stats(); st.Len != 1 || st.Dropped != 0 {
		t.Errorf("Stats %+v: want 1 queued, nothing dropped (a purge is not a drop)", st)
	}
	ob3, _ := Open(db, Options{}, fixedClock())
	if qs, _ := ob3.QuarantineStats(); qs.Purged != 2 || qs.Total != 2 {
		t.Errorf("counters after reopen %+v", qs)
	}
}

// A retry into a full queue makes room by the usual policy and counts it.
func TestRetryRespectsBounds(t *testing.T) {
	ob, _, _ := newOutbox(t, Options{MaxMessages: 2})
	p := mustAppend(t, ob, "alarms/old", "p", Alarm)
	if _, err := ob.Quarantine(p, "x"); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, ob, "telemetry/box", "1", Telemetry)
	mustAppend(t, ob, "telemetry/box", "2", Telemetry)
	if _, err := ob.Retry(p); err != nil {
		t.Fatal(err)
	}
	st := ob.Stats()
	if st.Len != 2 || st.DroppedTelemetry != 1 {
		t.Errorf("Stats %+v, want 2 queued and 1 telemetry dropped", st)
	}
}

// A corrupt quarantine record is removed and counted, not fatal.
func TestQuarantineCorruptRecord(t *testing.T) {
	ob, db, _ := newOutbox(t, Options{})
	p := mustAppend(t, ob, "telemetry/old", "p", Telemetry)
	if _, err := ob.Quarantine(p, "x"); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(quarantineName).Put(encodeKey(p), []byte("garbage")) }); err != nil {
		t.Fatal(err)
	}
	list, err := ob.ListQuarantine()
	if err != nil || len(list) != 0 {
		t.Fatalf("ListQuarantine = %v, %v", list, err)
	}
	if st := ob.Stats(); st.Corrupt != 1 {
		t.Errorf("Corrupt = %d, want 1", st.Corrupt)
	}
	if qs, _ := ob.QuarantineStats(); qs.Len != 0 {
		t.Errorf("quarantine Len %d after removing the corrupt record", qs.Len)
	}
}

func FuzzDecodeQuarantined(f *testing.F) {
	f.Add(encodeQuarantined(Quarantined{Message: Message{Topic: "t", Payload: []byte("p")}, Reason: "r", At: t0}))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := decodeQuarantined(7, b)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		again, err := decodeQuarantined(7, encodeQuarantined(q))
		if err != nil || again.Topic != q.Topic || string(again.Payload) != string(q.Payload) || again.Reason != q.Reason || !again.At.Equal(q.At) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, q)
		}
	})
}
