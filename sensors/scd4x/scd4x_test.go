package scd4x

import (
	"errors"
	"math"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
	"github.com/iotagent/iotagent/sensors/sim"
)

// The datasheet's CRC example (§3.11: 0xBEEF → 0x92) and the signal
// conversion (§3.5.2: T = -45 + 175 × word / 65535, RH = 100 × word /
// 65535).
func TestProtocol(t *testing.T) {
	if got := sim.SensirionCRC([]byte{0xbe, 0xef}); got != 0x92 {
		t.Errorf("CRC(0xBEEF) = %#02x, want 0x92", got)
	}
	w := sim.SCD4xWords(1000, 25, 50)
	if w != [3]uint16{1000, 26214, 32768} {
		t.Errorf("words for 1000 ppm, 25 °C, 50 %%RH = %v", w)
	}
}

// Readings through the registry, periph's driver and the emulated chip's
// command protocol.
func TestRead(t *testing.T) {
	t.Parallel()
	s, ctl := drvtest.Open(t, sensors.Part{Name: "air", Type: Type})
	for _, tt := range []struct{ co2, c, rh float64 }{
		{600, 21, 45},
		{400, -10, 0},
		{40000, 60, 100},
		{1234, 23.4, 56.7},
	} {
		for n, v := range map[string]float64{"co2_ppm": tt.co2, "temperature_c": tt.c, "humidity_pct": tt.rh} {
			if err := ctl.Set(n, v); err != nil {
				t.Fatal(err)
			}
		}
		got := drvtest.Read(t, s)
		// One count of the 16-bit words: 175/65535 °C, 100/65535 %RH.
		if len(got) != 3 || got["co2_ppm"] != tt.co2 || math.Abs(got["temperature_c"]-tt.c) > 0.0014 || math.Abs(got["humidity_pct"]-tt.rh) > 0.0008 {
			t.Errorf("set %+v, read %v", tt, got)
		}
	}
}

func TestSimRefuses(t *testing.T) {
	c, _ := sim.NewSCD4x(600, 20, 50)
	for _, x := range []struct {
		n string
		v float64
	}{{"co2_ppm", -1}, {"co2_ppm", 40001}, {"temperature_c", -11}, {"temperature_c", 61}, {"humidity_pct", 101}, {"humidity_pct", math.NaN()}} {
		if err := c.Set(x.n, x.v); !errors.Is(err, sim.ErrOutOfRange) {
			t.Errorf("Set(%s, %v) = %v, want ErrOutOfRange", x.n, x.v, err)
		}
	}
	if err := c.Set("lux", 1); err == nil {
		t.Error("Set(lux) succeeded")
	}
}

func TestErrors(t *testing.T) {
	t.Parallel() // opening and closing take 0.6 and 0.55 s each
	drvtest.I2CErrors(t, drvtest.I2CCase{
		Type: Type, Addr: 0x62, Invalid: 0x61,
		Chip: func() sim.Device { c, _ := sim.NewSCD4x(600, 20, 50); return c },
	})
}

// A CRC error is ErrCorrupt; a chip that was reset (idle again) is
// restarted by the next Read.
func TestCorruptAndReset(t *testing.T) {
	t.Parallel() // the idle chip costs periph's 6 s of polling
	chip, _ := sim.NewSCD4x(800, 20, 50)
	b := sim.NewI2CBus("t")
	b.Attach(0x62, chip)
	d, _ := sensors.Lookup(Type)
	s, err := d.Open(t.Context(), sensors.Part{Name: "air", Type: Type}, drvtest.Host(b))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chip.Corrupt()
	_, err = s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrCorrupt, `part "air"`, "CRC", "pull-ups")
	if v := drvtest.Read(t, s); v["co2_ppm"] != 800 {
		t.Errorf("read after the glitch = %v", v)
	}
	// A power cycle: a new chip, idle.
	fresh, _ := sim.NewSCD4x(900, 20, 50)
	b.Attach(0x62, fresh)
	if _, err := s.Read(t.Context()); err == nil {
		t.Fatal("Read of an idle chip succeeded")
	}
	if v := drvtest.Read(t, s); v["co2_ppm"] != 900 {
		t.Errorf("read after the restart = %v", v)
	}
	if !fresh.Periodic() {
		t.Error("the chip was not restarted")
	}
}
