package agent

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/iotagent/iotagent/agent/outbox"
)

// BenchmarkOpenStateDB is the start-up cost of the checks openStateDB
// makes before the agent uses agent.db, on the benchmarks' long-offline
// store (10,000 telemetry messages of about 200 bytes); compare
// BenchmarkOpenStateDBPlain, which is what the agent did before.
func BenchmarkOpenStateDB(b *testing.B) {
	dir, path := benchStore(b)
	b.ReportAllocs()
	for b.Loop() {
		db, ev, err := openStateDB(dir, path, time.Now())
		if err != nil || ev != nil {
			b.Fatal(err, ev)
		}
		db.Close()
	}
}

func BenchmarkOpenStateDBPlain(b *testing.B) {
	_, path := benchStore(b)
	b.ReportAllocs()
	for b.Loop() {
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}

func benchStore(b *testing.B) (string, string) {
	dir := b.TempDir()
	path := filepath.Join(dir, "agent.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	ob, err := outbox.Open(db, outbox.Options{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"temperature":21.53,"humidity":40.2,"pressure":1013.2,"ts":1760000000123,"pad":"` + strings.Repeat("x", 90) + `"}`)
	for i := 0; i < 10000; i++ {
		if _, err := ob.Append("dt/chocbox/pi-RPI-0042/telemetry", payload, outbox.Telemetry); err != nil {
			b.Fatal(err)
		}
	}
	db.Close()
	return dir, path
}
