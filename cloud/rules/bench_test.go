package rules

import (
	"fmt"
	"testing"
)

// BenchmarkHandleMessage is the rules engine's cost on the broker's
// publish path: with no rule, one atomic load; with 10 matching rules,
// the topic matches, a copy of the payload and a queue send (a goroutine
// empties the queue, so nothing is dropped).
func BenchmarkHandleMessage(b *testing.B) {
	for _, n := range []int{0, 10} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			db := openDB(b, b.TempDir())
			b.Cleanup(func() { _ = db.Close() })
			e, err := New(Options{DB: db, Publish: func(string, []byte, byte) error { return nil }})
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				if _, err := e.Create(fmt.Sprintf("r%d", i), Payload{SQL: "SELECT * FROM 'telemetry/+'",
					Actions: Actions{{Republish: &Republish{Topic: "out"}}}}); err != nil {
					b.Fatal(err)
				}
			}
			done := make(chan struct{})
			go func() {
				for {
					select {
					case <-e.queue:
					case <-done:
						return
					}
				}
			}()
			payload := []byte(`{"thing":"box-1","temperature_c":21.5,"humidity_pct":40,"pressure_kpa":101.3}`)
			b.ReportAllocs()
			for b.Loop() {
				e.HandleMessage(Source{ClientID: "box-1"}, "telemetry/box-1", payload)
			}
			close(done)
			if d := e.dropped.Load(); d != 0 {
				b.Logf("dropped %d", d)
			}
		})
	}
}
