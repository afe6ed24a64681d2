package all_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	_ "github.com/iotagent/iotagent/sensors/all"
)

// Every driver is registered, has a summary and a simulation, and opens
// and reads on it with its default options (or the minimal ones it needs).
func TestEveryDriver(t *testing.T) {
	want := []string{"ads1x15", "bh1750", "bme280", "bmp280", "cpu_temp", "ds18b20", "exec", "ina219", "mcp9808", "scd4x"}
	if got := sensors.Types(); !slices.Equal(got, want) {
		t.Fatalf("Types() = %v, want %v", got, want)
	}
	parts := map[string]sensors.Part{
		"ads1x15": {Options: json.RawMessage(`{"channels": [{"input": "0"}]}`)},
		"ds18b20": {Device: "28-0123456789ab"},
		"exec":    {Options: json.RawMessage(`{"argv": ["read-soil"], "sim_readings": {"soil_pct": 40}}`)},
	}
	for _, typ := range want {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			d, _ := sensors.Lookup(typ)
			if d.Summary == "" || d.Sim == nil {
				t.Fatalf("driver %q: summary %q, sim %v", typ, d.Summary, d.Sim != nil)
			}
			p := parts[typ]
			p.Name, p.Type, p.Sim = "p", typ, true
			h, ctl, err := d.Sim(p)
			if err != nil {
				t.Fatal(err)
			}
			defer ctl.Close()
			s, err := d.Open(context.Background(), p, h)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			v, err := s.Read(context.Background())
			if err != nil || len(v) == 0 {
				t.Fatalf("Read = %v, %v", v, err)
			}
		})
	}
}
