package outbox

import (
	"errors"
	"strings"
	"testing"
)

// FuzzCheckRecord: the header-only check Open does accepts exactly what
// decodeRecord accepts, and finds the same class and size.
func FuzzCheckRecord(f *testing.F) {
	f.Add(encodeRecord(Message{Topic: "t", Payload: []byte("p"), Class: Alarm}))
	f.Add(encodeRecord(Message{Topic: "dt/a/b", Class: Telemetry}))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		class, size, err := checkRecord(b)
		m, derr := decodeRecord(1, b)
		if (err == nil) != (derr == nil) {
			t.Fatalf("checkRecord: %v, decodeRecord: %v", err, derr)
		}
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		if class != m.Class || size != int64(len(m.Topic)+len(m.Payload)) {
			t.Fatalf("checkRecord: class %d size %d; decoded class %d, %d bytes", class, size, m.Class, len(m.Topic)+len(m.Payload))
		}
	})
}

// BenchmarkOpen opens an outbox holding 10,000 telemetry messages of about
// 200 bytes (2 MB, the benchmarks' long-offline agent).
func BenchmarkOpen(b *testing.B) {
	ob, db, _ := newOutbox(b, Options{})
	payload := []byte(`{"temperature":21.53,"humidity":40.2,"pressure":1013.2,"ts":1760000000123,"pad":"` + strings.Repeat("x", 90) + `"}`)
	fill(b, ob, 10000, "dt/chocbox/pi-RPI-0042/telemetry", payload)
	b.ReportAllocs()
	for b.Loop() {
		ob, err := Open(db, Options{}, fixedClock())
		if err != nil {
			b.Fatal(err)
		}
		if n := ob.Stats().Len; n != 10000 {
			b.Fatalf("Len %d, want 10000", n)
		}
	}
}
