// Package mcp9808 registers the "mcp9808" part: a Microchip MCP9808
// temperature sensor (±0.25 °C, -40..125 °C) on I²C at 0x18..0x1F, read
// through periph.io's mcp9808 driver. It reports temperature_c.
//
// Options: {"resolution": 0.0625} (°C: 0.5, 0.25, 0.125 or 0.0625, the
// default; a finer one converts slower, 250 ms at 0.0625).
//
// Open checks the manufacturer and device id registers (0x0054, 0x04), so
// another chip at the address is an error rather than a wrong temperature.
// Close puts the chip in shutdown (1 µA).
package mcp9808

import (
	"context"
	"fmt"

	"periph.io/x/devices/v3/mcp9808"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Type is the registry key.
const Type = "mcp9808"

// DefaultAddr is the address with A0..A2 to GND.
const DefaultAddr = 0x18

var addrs = []uint16{0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f}

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "Microchip MCP9808 temperature sensor, I²C 0x18..0x1f: temperature_c",
		Open:    Open,
		Sim:     Sim,
	})
}

type options struct {
	Resolution float64 `json:"resolution"`
}

var resolutions = map[float64]mcp9808.Opts{
	0.5:    {Res: mcp9808.Low},
	0.25:   {Res: mcp9808.Medium},
	0.125:  {Res: mcp9808.High},
	0.0625: {Res: mcp9808.Maximum},
}

type part struct {
	d   *drv.I2C
	dev *mcp9808.Dev
}

// Open opens the part through h.
func Open(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	o := options{Resolution: 0.0625}
	if err := drv.Options(p, &o); err != nil {
		return nil, err
	}
	opts, ok := resolutions[o.Resolution]
	if !ok {
		return nil, fmt.Errorf("%s: options: resolution %v: want 0.5, 0.25, 0.125 or 0.0625: %w", drv.Label(p), o.Resolution, sensors.ErrOptions)
	}
	d, err := drv.OpenI2C(p, h, DefaultAddr, addrs)
	if err != nil {
		return nil, err
	}
	dev, err := open(d, opts)
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	return &part{d: d, dev: dev}, nil
}

func open(d *drv.I2C, opts mcp9808.Opts) (*mcp9808.Dev, error) {
	d.Tap.Reset()
	manuf, err := d.ReadReg16(0x06)
	if err != nil {
		return nil, d.Err("read the manufacturer id", err)
	}
	id, err := d.ReadReg16(0x07)
	if err != nil {
		return nil, d.Err("read the device id", err)
	}
	if manuf != 0x0054 || id>>8 != 0x04 {
		return nil, fmt.Errorf("%s: manufacturer id %#04x, device id %#02x, not an MCP9808's (0x0054, 0x04): %w; check the address", d.Label, manuf, id>>8, sensors.ErrWrongChip)
	}
	opts.Addr = int(d.Addr)
	dev, err := mcp9808.New(d.Bus, &opts)
	if err != nil {
		return nil, d.Err("configure", err)
	}
	return dev, nil
}

// Read reads the temperature.
func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	s.d.Tap.Reset()
	t, err := s.dev.SenseTemp()
	if err != nil {
		return nil, s.d.Err("read the temperature", err)
	}
	c := drv.Celsius(t)
	if err := drv.Check("temperature_c", c, -40, 125); err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	return sensors.Values{"temperature_c": c}, nil
}

// Close shuts the chip down and closes the bus.
func (s *part) Close() error {
	s.d.Tap.Reset()
	err := s.dev.Halt()
	if err != nil {
		err = s.d.Err("shut down", err)
	}
	if cerr := s.d.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("%s: close the bus: %w", s.d.Label, cerr)
	}
	return err
}

// Sim returns a simulated MCP9808 (sim.MCP9808) at 21 °C on a simulated
// bus.
func Sim(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	chip, err := sim.NewMCP9808(21)
	if err != nil {
		return sensors.Host{}, nil, err
	}
	h, _ := drv.SimI2C(p, DefaultAddr, chip)
	return h, chip, nil
}
