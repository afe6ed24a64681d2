// Package bmp280 registers the "bmp280" part: a Bosch BMP280 temperature
// and pressure sensor (the BME280 without humidity) on I²C at 0x76 (SDO
// low) or 0x77, read through periph.io's bmxx80 driver. It reports
// temperature_c and pressure_kpa.
//
// Options: {"oversampling": 4} (1, 2, 4, 8 or 16). Each Read is one
// forced-mode measurement. Open checks the chip id (0x58): a BME280 (0x60)
// is the part type bme280.
package bmp280

import (
	"context"
	"fmt"
	"strings"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Type is the registry key.
const Type = "bmp280"

// Addresses (SDO low or high).
const (
	AddrLow  = 0x76
	AddrHigh = 0x77
)

const chipID = 0x58

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "Bosch BMP280 temperature/pressure sensor, I²C 0x76 or 0x77: temperature_c, pressure_kpa",
		Open:    Open,
		Sim:     Sim,
	})
}

type options struct {
	Oversampling int `json:"oversampling"`
}

var oversampling = map[int]bmxx80.Oversampling{1: bmxx80.O1x, 2: bmxx80.O2x, 4: bmxx80.O4x, 8: bmxx80.O8x, 16: bmxx80.O16x}

type part struct {
	d   *drv.I2C
	dev *bmxx80.Dev
}

// Open opens the part through h.
func Open(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	o := options{Oversampling: 4}
	if err := drv.Options(p, &o); err != nil {
		return nil, err
	}
	ovs, ok := oversampling[o.Oversampling]
	if !ok {
		return nil, fmt.Errorf("%s: options: oversampling %d: want 1, 2, 4, 8 or 16: %w", drv.Label(p), o.Oversampling, sensors.ErrOptions)
	}
	d, err := drv.OpenI2C(p, h, AddrLow, []uint16{AddrLow, AddrHigh})
	if err != nil {
		return nil, err
	}
	dev, err := open(d, ovs)
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	return &part{d: d, dev: dev}, nil
}

func open(d *drv.I2C, ovs bmxx80.Oversampling) (*bmxx80.Dev, error) {
	d.Tap.Reset()
	var id [1]byte
	if err := d.Bus.Tx(d.Addr, []byte{0xd0}, id[:]); err != nil {
		return nil, d.Err("read the chip id", err)
	}
	switch id[0] {
	case chipID:
	case 0x60:
		return nil, fmt.Errorf("%s: chip id 0x60 is a BME280: %w; use the part type bme280", d.Label, sensors.ErrWrongChip)
	default:
		return nil, fmt.Errorf("%s: chip id %#02x, not a BMP280's 0x58: %w; check the address", d.Label, id[0], sensors.ErrWrongChip)
	}
	dev, err := bmxx80.NewI2C(d.Bus, d.Addr, &bmxx80.Opts{Temperature: ovs, Pressure: ovs})
	if err != nil {
		return nil, d.Err("initialise", err)
	}
	if !strings.HasPrefix(dev.String(), "BMP280") {
		_ = dev.Halt()
		return nil, fmt.Errorf("%s: found %s: %w", d.Label, dev, sensors.ErrWrongChip)
	}
	return dev, nil
}

// Read makes one forced-mode measurement.
func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	s.d.Tap.Reset()
	var env physic.Env
	if err := s.dev.Sense(&env); err != nil {
		return nil, s.d.Err("measure", err)
	}
	v := sensors.Values{
		"temperature_c": drv.Celsius(env.Temperature),
		"pressure_kpa":  float64(env.Pressure) / float64(physic.KiloPascal),
	}
	// The datasheet's operating range (§1), with rounding slack.
	v, err := drv.Checked(v, map[string][2]float64{"temperature_c": {-40.001, 85.001}, "pressure_kpa": {29.999, 110.001}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	return v, nil
}

// Close puts the chip to sleep and closes the bus.
func (s *part) Close() error {
	s.d.Tap.Reset()
	err := s.dev.Halt()
	if err != nil {
		err = s.d.Err("halt", err)
	}
	if cerr := s.d.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("%s: close the bus: %w", s.d.Label, cerr)
	}
	return err
}

// Sim returns a simulated BMP280 (sim.NewBMP280) at 21 °C and 101.325 kPa.
func Sim(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	addr := p.Address
	if addr == 0 {
		addr = AddrLow
	}
	chip := sim.NewBMP280(addr, 21, 101.325)
	h, _ := drv.SimI2C(p, AddrLow, chip.Device())
	return h, chip, nil
}
