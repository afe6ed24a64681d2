package bmp280

import (
	"errors"
	"math"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Readings through the registry, periph's bmxx80 and the register-level
// BMP280 (the datasheet's calibration example: 25.08 °C, 100.65327 kPa).
func TestRead(t *testing.T) {
	s, ctl := drvtest.Open(t, sensors.Part{Name: "baro", Type: Type})
	for _, tt := range []struct{ c, kpa float64 }{
		{25.08, 100.65327},
		{21, 101.325},
		{-40, 30},
		{85, 110},
		{4.5, 95.5},
	} {
		if err := ctl.Set("temperature_c", tt.c); err != nil {
			t.Fatal(err)
		}
		if err := ctl.Set("pressure_kpa", tt.kpa); err != nil {
			t.Fatal(err)
		}
		got := drvtest.Read(t, s)
		// Resolution: 0.01 °C, about 0.1 Pa.
		if len(got) != 2 || math.Abs(got["temperature_c"]-tt.c) > 0.005 || math.Abs(got["pressure_kpa"]-tt.kpa) > 0.0002 {
			t.Errorf("set %v °C %v kPa, read %v", tt.c, tt.kpa, got)
		}
	}
}

func TestSimRefuses(t *testing.T) {
	_, ctl := drvtest.Open(t, sensors.Part{Name: "baro", Type: Type})
	if err := ctl.Set("humidity_pct", 50); !errors.Is(err, sim.ErrOutOfRange) {
		t.Errorf("Set(humidity_pct) on a BMP280 = %v, want ErrOutOfRange", err)
	}
	if err := ctl.Set("pressure_kpa", 120); !errors.Is(err, sim.ErrOutOfRange) {
		t.Errorf("Set(pressure_kpa, 120) = %v, want ErrOutOfRange", err)
	}
	if err := ctl.Set("temperature_c", math.NaN()); !errors.Is(err, sim.ErrOutOfRange) {
		t.Errorf("Set(temperature_c, NaN) = %v, want ErrOutOfRange", err)
	}
}

func TestErrors(t *testing.T) {
	drvtest.I2CErrors(t, drvtest.I2CCase{
		Type: Type, Addr: 0x76, Other: 0x77, Invalid: 0x75,
		Chip: func() sim.Device { return sim.NewBMP280(0x76, 20, 100).Device() },
	})
	t.Run("a BME280", func(t *testing.T) {
		b := sim.NewI2CBus("t")
		b.Attach(0x76, sim.NewBME280(0x76, 20, 50, 100).Device())
		err := drvtest.OpenErr(t, sensors.Part{Name: "baro", Type: Type}, drvtest.Host(b))
		drvtest.WantErr(t, err, sensors.ErrWrongChip, `part "baro"`, "BME280", "bme280")
	})
}
