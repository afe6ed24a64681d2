package ina219

import (
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Readings through the registry, periph's driver and the emulated chip,
// whose current and power registers follow the datasheet's equations
// (§8.5.1: calibration = 0.04096 / (current_LSB × R_shunt); current =
// shunt × calibration / 4096; power = current × bus / 5000, power_LSB =
// 20 × current_LSB). With 0.1 Ω and 3.2 A: current_LSB 97.656 µA,
// calibration 4194.
func TestRead(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		opts                 string
		volts, amps          float64
		wantV, wantA, wantPW float64
	}{
		// 1 A: shunt 10000 × 4194 / 4096 = 10239 counts; power 10239 ×
		// 3000 / 5000 = 6143 × 1.953125 mW.
		{"12 V 1 A", ``, 12, 1, 12, 10239 * 97.656e-6, 6143 * 1.953125e-3},
		{"5 V 0.25 A", ``, 5, 0.25, 5, 2559 * 97.656e-6, 639 * 1.953125e-3},
		{"reverse", ``, 3.3, -0.5, 3.3, -5119 * 97.656e-6, 0},
		{"no load", ``, 16, 0, 16, 0, 0},
		// 0.01 Ω, 20 A: current_LSB 610.35 µA, calibration 6710.
		{"0.01 Ω shunt", `{"shunt_ohms": 0.01, "max_current_a": 20}`, 12, 10, 12, 16381 * 610.351e-6, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, ctl := drvtest.Open(t, sensors.Part{Name: "pump", Type: Type, Options: json.RawMessage(tt.opts)})
			if err := ctl.Set("voltage_v", tt.volts); err != nil {
				t.Fatal(err)
			}
			if err := ctl.Set("current_a", tt.amps); err != nil {
				t.Fatal(err)
			}
			got := drvtest.Read(t, s)
			if len(got) != 3 || got["voltage_v"] != tt.wantV || math.Abs(got["current_a"]-tt.wantA) > 1e-6 {
				t.Errorf("read %v, want voltage_v %v current_a %v", got, tt.wantV, tt.wantA)
			}
			wantP := tt.wantPW
			if wantP == 0 {
				wantP = math.Abs(tt.wantA) * tt.wantV // within the chip's truncation
			}
			if math.Abs(got["power_w"]-wantP) > 0.002*math.Max(1, wantP) {
				t.Errorf("power_w = %v, want %v", got["power_w"], wantP)
			}
		})
	}
}

// A current beyond max_current_a overflows the current register: the chip
// sets OVF and the part reports an error, not a clipped current.
func TestOverflow(t *testing.T) {
	s, ctl := drvtest.Open(t, sensors.Part{Name: "pump", Type: Type, Options: json.RawMessage(`{"max_current_a": 1}`)})
	if err := ctl.Set("current_a", 2); err != nil {
		t.Fatal(err)
	}
	_, err := s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrImplausible, `part "pump"`, "max_current_a")
}

func TestSimRefuses(t *testing.T) {
	_, ctl := drvtest.Open(t, sensors.Part{Name: "pump", Type: Type})
	for _, c := range []struct {
		name string
		v    float64
	}{{"voltage_v", -1}, {"voltage_v", 16.1}, {"current_a", 3.3}, {"current_a", -3.3}, {"current_a", math.NaN()}} {
		if err := ctl.Set(c.name, c.v); !errors.Is(err, sim.ErrOutOfRange) {
			t.Errorf("Set(%s, %v) = %v, want ErrOutOfRange", c.name, c.v, err)
		}
	}
	if err := ctl.Set("power_w", 1); err == nil {
		t.Error("Set(power_w) succeeded; the chip computes it")
	}
}

func TestErrors(t *testing.T) {
	drvtest.I2CErrors(t, drvtest.I2CCase{
		Type: Type, Addr: 0x40, Other: 0x45, Invalid: 0x50,
		Chip: func() sim.Device { c, _ := sim.NewINA219(0.1, 5, 0.1); return c },
	})
	for _, opts := range []string{`{"shunt_ohms": 0}`, `{"shunt_ohms": -1}`, `{"max_current_a": 0}`, `{"max_current_a": 4}`, `{"shunt_ohms": 0.1, "max_current_a": 3.2, "x": 1}`, `[1]`, `{"shunt_ohms": 0.1} {}`} {
		err := drvtest.OpenErr(t, sensors.Part{Name: "pump", Type: Type, Options: json.RawMessage(opts)}, drvtest.Host(sim.NewI2CBus("t")))
		drvtest.WantErr(t, err, sensors.ErrOptions, `part "pump"`)
	}
	t.Run("another chip", func(t *testing.T) {
		b := sim.NewI2CBus("t")
		b.Attach(0x40, otherChip{}) // acknowledges everything, reads 0xab
		err := drvtest.OpenErr(t, sensors.Part{Name: "pump", Type: Type}, drvtest.Host(b))
		drvtest.WantErr(t, err, sensors.ErrWrongChip, `part "pump"`, "0x1fff")
	})
}

type otherChip struct{}

func (otherChip) Tx(w, r []byte) error {
	for i := range r {
		r[i] = 0xab
	}
	return nil
}
