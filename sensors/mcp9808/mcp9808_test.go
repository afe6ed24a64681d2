package mcp9808

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
	"github.com/iotagent/iotagent/sensors/sim"
)

// The ambient temperature register of the datasheet (DS25095A, register
// 5-4 and equation 5-1): 1/16 °C in 13-bit two's complement.
func TestTaRegister(t *testing.T) {
	for _, tt := range []struct {
		c    float64
		res  int
		bits uint16
	}{
		{25, 3, 0x0190},
		{-25, 3, 0x1e70},
		{0.0625, 3, 0x0001},
		{-0.0625, 3, 0x1fff},
		{125, 3, 0x07d0},
		{-40, 3, 0x1d80},
		{21.3, 0, 0x0150}, // 0.5 °C: truncated to 21.0
		{21.3, 1, 0x0154}, // 0.25 °C: 21.25
	} {
		if got := sim.MCP9808TaBits(tt.c, tt.res); got != tt.bits {
			t.Errorf("MCP9808TaBits(%v, %d) = %#04x, want %#04x", tt.c, tt.res, got, tt.bits)
		}
	}
}

// Readings through the registry, periph's driver and the register-level
// chip, at each resolution.
func TestRead(t *testing.T) {
	for _, tt := range []struct {
		opts string
		set  float64
		want float64
	}{
		{``, 25, 25},
		{``, -25, -25},
		{``, 21.3, 21.25}, // 0.0625 °C steps: 21.25 is the step below 21.3
		{``, 21.33, 21.3125},
		{``, -0.0625, -0.0625},
		{``, 125, 125},
		{``, -40, -40},
		{`{"resolution": 0.5}`, 21.3, 21},
		{`{"resolution": 0.25}`, 21.3, 21.25},
		{`{"resolution": 0.125}`, -10.2, -10.25},
	} {
		s, ctl := drvtest.Open(t, sensors.Part{Name: "fridge", Type: Type, Options: json.RawMessage(tt.opts)})
		if err := ctl.Set("temperature_c", tt.set); err != nil {
			t.Fatalf("Set(%v): %v", tt.set, err)
		}
		if got := drvtest.Read(t, s); got["temperature_c"] != tt.want || len(got) != 1 {
			t.Errorf("options %s, set %v: read %v, want temperature_c %v", tt.opts, tt.set, got, tt.want)
		}
	}
}

func TestSimRefuses(t *testing.T) {
	_, ctl := drvtest.Open(t, sensors.Part{Name: "fridge", Type: Type})
	for _, v := range []float64{-40.1, 125.1, nan()} {
		if err := ctl.Set("temperature_c", v); !errors.Is(err, sim.ErrOutOfRange) {
			t.Errorf("Set(%v) = %v, want ErrOutOfRange", v, err)
		}
	}
	if err := ctl.Set("humidity_pct", 50); err == nil {
		t.Error("Set of a reading the part does not have succeeded")
	}
}

func TestErrors(t *testing.T) {
	drvtest.I2CErrors(t, drvtest.I2CCase{
		Type: Type, Addr: 0x18, Other: 0x19, Invalid: 0x40,
		Chip: func() sim.Device { c, _ := sim.NewMCP9808(20); return c },
	})
	t.Run("another chip", func(t *testing.T) {
		c, _ := sim.NewMCP9808(20)
		c.SetDeviceID(0x0200)
		b := sim.NewI2CBus("test")
		b.Attach(0x18, c)
		err := drvtest.OpenErr(t, sensors.Part{Name: "fridge", Type: Type}, drvtest.Host(b))
		drvtest.WantErr(t, err, sensors.ErrWrongChip, `part "fridge"`, "0x02", "not an MCP9808")
	})
	t.Run("bad resolution", func(t *testing.T) {
		b := sim.NewI2CBus("test")
		err := drvtest.OpenErr(t, sensors.Part{Name: "fridge", Type: Type, Options: json.RawMessage(`{"resolution": 0.1}`)}, drvtest.Host(b))
		drvtest.WantErr(t, err, sensors.ErrOptions, "resolution 0.1")
	})
	t.Run("resolution not a number", func(t *testing.T) {
		b := sim.NewI2CBus("test")
		err := drvtest.OpenErr(t, sensors.Part{Name: "fridge", Type: Type, Options: json.RawMessage(`{"resolution": "fine"}`)}, drvtest.Host(b))
		drvtest.WantErr(t, err, sensors.ErrOptions, "resolution")
	})
}

// Close shuts the chip down: its configuration register has SHDN set.
func TestCloseShutsDown(t *testing.T) {
	c, _ := sim.NewMCP9808(20)
	b := sim.NewI2CBus("test")
	b.Attach(0x18, c)
	d, _ := sensors.Lookup(Type)
	s, err := d.Open(t.Context(), sensors.Part{Name: "fridge", Type: Type}, drvtest.Host(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := make([]byte, 2)
	if err := b.Tx(0x18, []byte{0x01}, r); err != nil {
		t.Fatal(err)
	}
	if r[0]&1 == 0 {
		t.Errorf("configuration after Close = % x, want the shutdown bit (0x0100)", r)
	}
}

func nan() float64 { var z float64; return z / z }
