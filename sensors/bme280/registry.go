package bme280

import (
	"context"
	"errors"
	"fmt"

	"periph.io/x/devices/v3/bmxx80"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Type is the registry key of the BME280 part.
const Type = "bme280"

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "Bosch BME280 temperature/humidity/pressure sensor, I²C 0x76 or 0x77: temperature_c, humidity_pct, pressure_kpa",
		Open:    openPart,
		Sim:     simPart,
	})
}

// partOptions are the part's options: {"oversampling": 4} (1, 2, 4, 8 or
// 16; more is slower and less noisy). Each Read is one forced-mode
// measurement.
type partOptions struct {
	Oversampling int `json:"oversampling"`
}

var oversampling = map[int]bmxx80.Oversampling{1: bmxx80.O1x, 2: bmxx80.O2x, 4: bmxx80.O4x, 8: bmxx80.O8x, 16: bmxx80.O16x}

type part struct {
	d   *drv.I2C
	dev *BME280
}

func openPart(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	o := partOptions{Oversampling: 4}
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
	d.Tap.Reset()
	dev, err := New(p.Name, d.Bus, d.Addr, Opts{Oversampling: ovs})
	if err != nil {
		_ = d.Close()
		return nil, partErr(d, "initialise", err)
	}
	return &part{d: d, dev: dev}, nil
}

// partErr maps the package's errors to the registry's sentinels.
func partErr(d *drv.I2C, step string, err error) error {
	switch {
	case errors.Is(err, ErrWrongChip):
		return fmt.Errorf("%s: %s: %w: %w; a BMP280 (no humidity) is the part type bmp280", d.Label, step, sensors.ErrWrongChip, err)
	case errors.Is(err, ErrImplausible):
		return fmt.Errorf("%s: %s: %w: %w", d.Label, step, sensors.ErrImplausible, err)
	}
	return d.Err(step, err)
}

func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	s.d.Tap.Reset()
	r, err := s.dev.Read(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", s.d.Label, err)
		}
		return nil, partErr(s.d, "read", err)
	}
	return sensors.Values{"temperature_c": r.TemperatureC, "humidity_pct": r.HumidityPct, "pressure_kpa": r.PressureKPa}, nil
}

func (s *part) Close() error {
	err := s.dev.Close()
	if cerr := s.d.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("%s: close the bus: %w", s.d.Label, cerr)
	}
	return err
}

// simPart returns a simulated BME280 (sim.BME280Bus) at 21 °C, 45 %RH and
// 101.325 kPa.
func simPart(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	addr := p.Address
	if addr == 0 {
		addr = AddrLow
	}
	chip := sim.NewBME280(addr, 21, 45, 101.325)
	h, _ := drv.SimI2C(p, AddrLow, chip.Device())
	return h, chip, nil
}
