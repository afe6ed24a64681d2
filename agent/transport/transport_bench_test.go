package transport

import "testing"

// BenchmarkMatch is the dispatcher's per-message work: every incoming
// message is matched against each of the agent's subscriptions.
func BenchmarkMatch(b *testing.B) {
	filters := []string{
		"$aws/things/chocolate-box-1/shadow/get/accepted",
		"$aws/things/chocolate-box-1/shadow/get/rejected",
		"$aws/things/chocolate-box-1/shadow/update/accepted",
		"$aws/things/chocolate-box-1/shadow/update/rejected",
		"$aws/things/chocolate-box-1/shadow/update/delta",
		"$aws/things/chocolate-box-1/jobs/notify-next",
		"$aws/things/chocolate-box-1/jobs/+/get/+",
		"$aws/things/chocolate-box-1/defender/metrics/json/#",
	}
	topic := "$aws/things/chocolate-box-1/shadow/update/delta"
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, f := range filters {
			if match(f, topic) {
				n++
			}
		}
		if n != 1 {
			b.Fatalf("%d filters match", n)
		}
	}
}

// BenchmarkValidatePublish is the check before every publish.
func BenchmarkValidatePublish(b *testing.B) {
	payload := []byte(`{"thing":"chocolate-box-1","timestamp":1760000000,"temperature_c":21.37,"humidity_pct":45.02,"pressure_kpa":101.33,"motion":false,"lid_open":false,"armed":false,"alarm":"off"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := validatePublish("telemetry/chocolate-box-1", 1, payload); err != nil {
			b.Fatal(err)
		}
	}
}
