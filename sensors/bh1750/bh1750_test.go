package bh1750

import (
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Lux through the registry, periph's driver and the emulated chip. The
// datasheet's example (p. 7): a count of 0x8301 (33537) in the high
// resolution mode is 33537 / 1.2 = 27947.5 lx; periph truncates to whole
// lux.
func TestRead(t *testing.T) {
	for _, tt := range []struct {
		opts      string
		set, want float64
	}{
		{``, 27947.5, 27947},
		{``, 0, 0},
		{``, 1000, 1000},
		{``, 54612.5, 54612},
		{``, 0.4, 0},                      // below one count (0.83 lx)
		{``, 101.5, 101},                  // 122 counts
		{`{"mode": "low"}`, 101.5, 100},   // 120 counts: steps of 4
		{`{"mode": "low"}`, 1000.2, 1000}, // 1200 counts
	} {
		s, ctl := drvtest.Open(t, sensors.Part{Name: "light", Type: Type, Options: json.RawMessage(tt.opts)})
		if err := ctl.Set("lux", tt.set); err != nil {
			t.Fatalf("Set(%v): %v", tt.set, err)
		}
		got := drvtest.Read(t, s)
		if math.Abs(got["lux"]-tt.want) > 1e-6 || len(got) != 1 {
			t.Errorf("options %s, set %v lx: read %v, want lux %v", tt.opts, tt.set, got, tt.want)
		}
	}
}

func TestDatasheetCount(t *testing.T) {
	if got := sim.BH1750Count(27947.5, 0x10); got != 0x8301 {
		t.Errorf("count for 27947.5 lx = %#04x, want 0x8301", got)
	}
}

func TestSimRefuses(t *testing.T) {
	_, ctl := drvtest.Open(t, sensors.Part{Name: "light", Type: Type})
	for _, v := range []float64{-1, 54613, math.NaN(), math.Inf(1)} {
		if err := ctl.Set("lux", v); !errors.Is(err, sim.ErrOutOfRange) {
			t.Errorf("Set(%v) = %v, want ErrOutOfRange", v, err)
		}
	}
}

func TestErrors(t *testing.T) {
	drvtest.I2CErrors(t, drvtest.I2CCase{
		Type: Type, Addr: 0x23, Other: 0x5c, Invalid: 0x24,
		Chip: func() sim.Device { c, _ := sim.NewBH1750(10); return c },
	})
	t.Run("bad mode", func(t *testing.T) {
		err := drvtest.OpenErr(t, sensors.Part{Name: "light", Type: Type, Options: json.RawMessage(`{"mode": "high2"}`)}, drvtest.Host(sim.NewI2CBus("t")))
		drvtest.WantErr(t, err, sensors.ErrOptions, `mode "high2"`)
	})
}
