// Package ina219 registers the "ina219" part: a TI INA219 current and
// power monitor (bus 0..26 V, current through a shunt resistor) on I²C at
// 0x40..0x4F, read through periph.io's ina219 driver. It reports
// voltage_v (the bus, on the load side of the shunt), current_a (negative
// when it flows backwards) and power_w.
//
// Options: {"shunt_ohms": 0.1, "max_current_a": 3.2}: the board's shunt
// resistor (0.1 Ω on the common breakouts) and the largest current to
// measure, which sets the resolution (max / 32768 per step). periph
// configures the 16 V bus range and the ±320 mV shunt range. A current or
// power beyond the calibrated range is an error (the chip's OVF flag), not
// a clipped value.
package ina219

import (
	"context"
	"fmt"
	"math"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ina219"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Type is the registry key.
const Type = "ina219"

// DefaultAddr is the address with A0 and A1 to GND.
const DefaultAddr = 0x40

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "TI INA219 current/power monitor, I²C 0x40..0x4f: voltage_v, current_a, power_w",
		Open:    Open,
		Sim:     Sim,
	})
}

type options struct {
	ShuntOhms   float64 `json:"shunt_ohms"`
	MaxCurrentA float64 `json:"max_current_a"`
}

func addrs() []uint16 {
	a := make([]uint16, 16)
	for i := range a {
		a[i] = 0x40 + uint16(i)
	}
	return a
}

func parse(p sensors.Part) (options, error) {
	o := options{ShuntOhms: 0.1, MaxCurrentA: 3.2}
	if err := drv.Options(p, &o); err != nil {
		return o, err
	}
	if !(o.ShuntOhms >= 0.001 && o.ShuntOhms <= 100) {
		return o, fmt.Errorf("%s: options: shunt_ohms %v: want 0.001..100: %w", drv.Label(p), o.ShuntOhms, sensors.ErrOptions)
	}
	// The shunt range is ±320 mV; the calibration register has 16 bits.
	if fs := 0.32 / o.ShuntOhms; !(o.MaxCurrentA > 0 && o.MaxCurrentA <= fs*1.0001) {
		return o, fmt.Errorf("%s: options: max_current_a %v: want more than 0 and at most %.4g (320 mV across %v Ω): %w", drv.Label(p), o.MaxCurrentA, fs, o.ShuntOhms, sensors.ErrOptions)
	}
	return o, nil
}

type part struct {
	d   *drv.I2C
	dev *ina219.Dev
}

// Open opens the part through h.
func Open(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	o, err := parse(p)
	if err != nil {
		return nil, err
	}
	d, err := drv.OpenI2C(p, h, DefaultAddr, addrs())
	if err != nil {
		return nil, err
	}
	d.Tap.Reset()
	dev, err := ina219.New(d.Bus, &ina219.Opts{
		Address:       int(d.Addr),
		SenseResistor: physic.ElectricResistance(math.Round(o.ShuntOhms * float64(physic.Ohm))),
		MaxCurrent:    physic.ElectricCurrent(math.Round(o.MaxCurrentA * float64(physic.Ampere))),
	})
	if err != nil {
		_ = d.Close()
		return nil, d.Err("calibrate", err)
	}
	// periph writes 0x1FFF to the configuration: read it back, as the
	// chip has no id register.
	if cfg, err := d.ReadReg16(0x00); err != nil || cfg != 0x1fff {
		_ = d.Close()
		if err != nil {
			return nil, d.Err("read the configuration back", err)
		}
		return nil, fmt.Errorf("%s: configuration reads back %#04x, not the 0x1fff written: %w; check the address", d.Label, cfg, sensors.ErrWrongChip)
	}
	return &part{d: d, dev: dev}, nil
}

// Read reads the bus voltage, the current and the power.
func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	s.d.Tap.Reset()
	pm, err := s.dev.Sense()
	if err != nil {
		if cause := s.d.Tap.Cause(nil); cause == nil {
			// periph's only error without a bus error: the OVF flag.
			return nil, fmt.Errorf("%s: %v: the current or power is beyond the range max_current_a sets: %w", s.d.Label, err, sensors.ErrImplausible)
		}
		return nil, s.d.Err("read", err)
	}
	v := sensors.Values{
		"voltage_v": float64(pm.Voltage) / float64(physic.Volt),
		"current_a": float64(pm.Current) / float64(physic.Ampere),
		"power_w":   float64(pm.Power) / float64(physic.Watt),
	}
	v, err = drv.Checked(v, map[string][2]float64{"voltage_v": {0, 26}, "current_a": {-400, 400}, "power_w": {0, 11000}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	return v, nil
}

// Close closes the bus (the chip keeps measuring; it has no shutdown in
// periph's driver).
func (s *part) Close() error {
	if err := s.d.Close(); err != nil {
		return fmt.Errorf("%s: close the bus: %w", s.d.Label, err)
	}
	return nil
}

// Sim returns a simulated INA219 (sim.INA219, with the shunt of the
// options) measuring 5 V and 0.25 A on a simulated bus.
func Sim(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	o, err := parse(p)
	if err != nil {
		return sensors.Host{}, nil, err
	}
	chip, err := sim.NewINA219(o.ShuntOhms, 5, 0.25)
	if err != nil {
		return sensors.Host{}, nil, err
	}
	h, _ := drv.SimI2C(p, DefaultAddr, chip)
	return h, chip, nil
}
