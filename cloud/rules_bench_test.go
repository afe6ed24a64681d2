package cloud_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/rules"
)

// BenchmarkRuleRepublish measures messages per second through a rule
// with a WHERE clause, a substitution template and a republish to a real
// MQTT subscriber: the engine's workers against the broker.
func BenchmarkRuleRepublish(b *testing.B) {
	sim := cloudtest.StartWith(b, cloud.Options{RulesQueueSize: 1 << 14})
	if _, err := sim.Rules().Create("bench", rules.Payload{
		SQL:     "SELECT *, topic(2) AS box FROM 'alarms/+' WHERE event <> 'test'",
		Actions: rules.Actions{{Republish: &rules.Republish{Topic: "notifications/${topic(2)}"}}},
	}); err != nil {
		b.Fatal(err)
	}
	sub := connect(b, sim, "phone", allowAll, "notifications/#")
	go func() { // drain: the subscriber must not fall behind
		for range sub.msgs {
		}
	}()
	payload := []byte(`{"thing":"box-1","sensor":"motion","event":"motion","message":"motion detected","timestamp":1700000000}`)
	e := sim.Rules()
	src := rules.Source{ClientID: "box-1", Principal: "cert"}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		for e.QueueLen() > 1<<13 { // keep the producer from dropping
			runtime.Gosched()
		}
		e.HandleMessage(src, "alarms/box-1", payload)
	}
	deadline := time.Now().Add(time.Minute)
	var m rules.Metrics
	for {
		m = e.Metrics().Rules["bench"]
		if m.ActionsSucceeded+m.ActionsFailed+m.Dropped == int64(b.N) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(m.ActionsSucceeded)/time.Since(start).Seconds(), "msgs/s")
	if m.ActionsFailed != 0 || m.Dropped != 0 {
		b.Errorf("failed %d, dropped %d of %d", m.ActionsFailed, m.Dropped, b.N)
	}
}

// BenchmarkPublishLatencyRules measures a device's QoS 1 publish round
// trip (PUBLISH to PUBACK through the broker's publish path) with no
// rule and with 10 active rules matching the topic, each republishing.
func BenchmarkPublishLatencyRules(b *testing.B) {
	for _, n := range []int{0, 10} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			sim := cloudtest.Start(b, "")
			for i := range n {
				if _, err := sim.Rules().Create(fmt.Sprintf("r%d", i), rules.Payload{
					SQL:     "SELECT temperature_c, topic(2) AS thing FROM 'telemetry/+' WHERE temperature_c > 0",
					Actions: rules.Actions{{Republish: &rules.Republish{Topic: fmt.Sprintf("sink/%d/${topic(2)}", i)}}},
				}); err != nil {
					b.Fatal(err)
				}
			}
			box := connect(b, sim, "box-1", "")
			payload := `{"thing":"box-1","temperature_c":21.5,"humidity_pct":40,"pressure_kpa":101.3,"armed":false}`
			b.ResetTimer()
			for b.Loop() {
				box.publish(b, "telemetry/box-1", payload)
			}
			b.StopTimer()
			if m := sim.Rules().Metrics(); m.Dropped != 0 {
				b.Logf("rules queue dropped %d", m.Dropped)
			}
		})
	}
}
