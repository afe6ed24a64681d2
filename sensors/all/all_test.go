package all_test

import (
	"context"
	"encoding/json"
	"math"
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
	sets := map[string][2]any{
		"ads1x15": {"ain0_v", 2.0}, "bh1750": {"lux", 500.0}, "bme280": {"temperature_c", 22.5},
		"bmp280": {"pressure_kpa", 99.0}, "cpu_temp": {"temperature_c", 51.5}, "ds18b20": {"temperature_c", 3.5},
		"exec": {"soil_pct", 33.0}, "ina219": {"voltage_v", 12.0}, "mcp9808": {"temperature_c", 7.25}, "scd4x": {"co2_ppm", 1200.0},
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
			// SimControl.Set from another goroutine while the part is
			// read (the agent's local API and its sampler); -race checks.
			name, val := sets[typ][0].(string), sets[typ][1].(float64)
			done := make(chan error)
			go func() {
				var err error
				for range 20 {
					if err = ctl.Set(name, val); err != nil {
						break
					}
				}
				done <- err
			}()
			for range 3 {
				if _, err := s.Read(context.Background()); err != nil {
					t.Errorf("Read during Set: %v", err)
				}
			}
			if err := <-done; err != nil {
				t.Fatalf("Set(%s, %v): %v", name, val, err)
			}
			if v, err := s.Read(context.Background()); err != nil || math.Abs(v[name]-val) > 1e-4*math.Max(1, val) {
				t.Errorf("Read after Set(%s, %v) = %v, %v", name, val, v, err)
			}
		})
	}
}
