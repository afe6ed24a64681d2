package bme280

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
	"github.com/iotagent/iotagent/sensors/sim"
)

// The registered part: readings by name through the registry, bmxx80
// and the register-level chip.
func TestPartRead(t *testing.T) {
	s, ctl := drvtest.Open(t, sensors.Part{Name: "env", Type: Type, Options: json.RawMessage(`{"oversampling": 16}`)})
	for _, tt := range []struct{ c, rh, kpa float64 }{{25.08, 50, 100.65327}, {-10, 95, 90}} {
		for n, v := range map[string]float64{"temperature_c": tt.c, "humidity_pct": tt.rh, "pressure_kpa": tt.kpa} {
			if err := ctl.Set(n, v); err != nil {
				t.Fatal(err)
			}
		}
		got := drvtest.Read(t, s)
		if len(got) != 3 || math.Abs(got["temperature_c"]-tt.c) > 0.005 || math.Abs(got["humidity_pct"]-tt.rh) > 0.01 || math.Abs(got["pressure_kpa"]-tt.kpa) > 0.0002 {
			t.Errorf("set %+v, read %v", tt, got)
		}
	}
}

func TestPartErrors(t *testing.T) {
	drvtest.I2CErrors(t, drvtest.I2CCase{
		Type: Type, Addr: 0x77, Other: 0x76, Invalid: 0x78,
		Chip: func() sim.Device { return sim.NewBME280(0x77, 20, 50, 100).Device() },
	})
	err := drvtest.OpenErr(t, sensors.Part{Name: "env", Type: Type, Options: json.RawMessage(`{"oversampling": 3}`)}, drvtest.Host(sim.NewI2CBus("t")))
	drvtest.WantErr(t, err, sensors.ErrOptions, "oversampling 3")
}

// The bme280 part refuses a BMP280 and names the type to use.
func TestBME280PartRefusesBMP280(t *testing.T) {
	b := sim.NewI2CBus("t")
	b.Attach(0x76, sim.NewBMP280(0x76, 20, 100).Device())
	err := drvtest.OpenErr(t, sensors.Part{Name: "env", Type: Type}, drvtest.Host(b))
	drvtest.WantErr(t, err, sensors.ErrWrongChip, `part "env"`, "bmp280")
}
