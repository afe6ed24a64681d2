package agent

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/outbox"
	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sensortest"
)

// BenchmarkApplyDesired applies a typical delta of the chocolate box.
func BenchmarkApplyDesired(b *testing.B) {
	desired := map[string]any{
		"alarm":     map[string]any{"armed": true},
		"telemetry": map[string]any{"interval_s": float64(30)},
		"sensors":   map[string]any{"bme280": map[string]any{"limits": map[string]any{"temperature_c": map[string]any{"high": 28.5}}}},
		"log":       map[string]any{"level": "debug"},
		"outputs":   map[string]any{"led": true, "buzzer": false},
	}
	b.ReportAllocs()
	for b.Loop() {
		s := baseSettings()
		if changed, problems := s.ApplyDesired(desired); len(changed) != 5 || len(problems) != 0 {
			b.Fatalf("changed %v, problems %v", changed, problems)
		}
	}
}

// BenchmarkReportUnchanged is what every wake-up of the sync loop costs
// when nothing changed: build the reported document and compare it with
// the last one sent.
func BenchmarkReportUnchanged(b *testing.B) {
	a := benchAgent(b)
	last := a.reported()
	b.ReportAllocs()
	for b.Loop() {
		cur := a.reported()
		if !sameReport(cur, last) {
			b.Fatal("reported state changed")
		}
	}
}

func benchAgent(b testing.TB) *Agent {
	b.Helper()
	cfg := config.Default()
	cfg.ThingName, cfg.MQTT.Endpoint, cfg.MQTT.RootCA = "chocolate-box-1", "localhost", "/dev/null"
	cfg.Identity.Cert, cfg.Identity.Key = "/nonexistent/device.crt", "/nonexistent/device.key"
	cfg.StateDir = b.TempDir()
	a, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(cfg.StateDir, "agent.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if a.ob, err = outbox.Open(db, outbox.Options{}, nil); err != nil {
		b.Fatal(err)
	}
	a.hw = &Hardware{Outputs: map[string]sensors.Output{}, Env: sensortest.NewFakeSensor("bme280")}
	a.setupParts()
	a.st.Parts["bme280"].Values = sensors.Values{"temperature_c": 21.37, "humidity_pct": 45.02, "pressure_kpa": 101.33}
	return a
}
