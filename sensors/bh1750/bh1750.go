// Package bh1750 registers the "bh1750" part: a ROHM BH1750FVI ambient
// light sensor (1..65535 counts, 0..54612 lx) on I²C at 0x23 (ADDR low) or
// 0x5C (ADDR high), read through periph.io's bh1750 driver. It reports lux.
//
// Options: {"mode": "high"} ("high": 1 lx steps, the default; "low": 4
// counts (3.3 lx) steps, 16 ms instead of 120 ms). periph's driver reports
// whole lux (it truncates count / 1.2), so the chip's 0.5 lx mode 2 would
// gain nothing and is not offered. Each Read waits for one conversion. The chip has no id register: a
// different chip at the address is not detected.
package bh1750

import (
	"context"
	"fmt"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bh1750"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Type is the registry key.
const Type = "bh1750"

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "ROHM BH1750 ambient light sensor, I²C 0x23 or 0x5c: lux",
		Open:    Open,
		Sim:     Sim,
	})
}

type options struct {
	Mode string `json:"mode"`
}

var modes = map[string]bh1750.Resolution{
	"high": bh1750.ContinuousHighResMode,
	"low":  bh1750.ContinuousLowResMode,
}

type part struct {
	d    *drv.I2C
	dev  *bh1750.Dev
	mode bh1750.Resolution
}

// Open opens the part through h.
func Open(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	o := options{Mode: "high"}
	if err := drv.Options(p, &o); err != nil {
		return nil, err
	}
	mode, ok := modes[o.Mode]
	if !ok {
		return nil, fmt.Errorf("%s: options: mode %q: want high or low: %w", drv.Label(p), o.Mode, sensors.ErrOptions)
	}
	d, err := drv.OpenI2C(p, h, bh1750.I2CAddr, []uint16{bh1750.I2CAddr, bh1750.AlternativeI2CAddr})
	if err != nil {
		return nil, err
	}
	s := &part{d: d, mode: mode}
	d.Tap.Reset()
	if s.dev, err = bh1750.NewI2C(d.Bus, d.Addr); err != nil {
		_ = d.Close()
		return nil, d.Err("power on", err)
	}
	if err := s.dev.SetResolution(mode); err != nil {
		_ = d.Close()
		return nil, d.Err("set the mode", err)
	}
	return s, nil
}

// Read makes one conversion (120 ms, or 16 ms in the low mode).
func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	s.d.Tap.Reset()
	f, err := s.dev.Sense()
	if err != nil {
		return nil, s.d.Err("read the light", err)
	}
	lux := float64(f) / float64(physic.Lumen)
	if err := drv.Check("lux", lux, 0, sim.BH1750MaxLux); err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	return sensors.Values{"lux": lux}, nil
}

// Close powers the chip down and closes the bus.
func (s *part) Close() error {
	s.d.Tap.Reset()
	err := s.dev.Halt()
	if err != nil {
		err = s.d.Err("power down", err)
	}
	if cerr := s.d.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("%s: close the bus: %w", s.d.Label, cerr)
	}
	return err
}

// Sim returns a simulated BH1750 (sim.BH1750) in 300 lx on a simulated bus.
func Sim(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	chip, err := sim.NewBH1750(300)
	if err != nil {
		return sensors.Host{}, nil, err
	}
	h, _ := drv.SimI2C(p, bh1750.I2CAddr, chip)
	return h, chip, nil
}
