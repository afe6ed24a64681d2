// Package scd4x registers the "scd4x" part: a Sensirion SCD40 or SCD41
// photoacoustic CO₂ sensor with temperature and humidity, on I²C at 0x62,
// read through periph.io's scd4x driver. It reports co2_ppm,
// temperature_c and humidity_pct.
//
// The part has no options. Open starts periodic measurement (a new reading
// every 5 s: set the part's interval to 5 s or more, or a Read waits for
// the next one); opening takes about 0.6 s, as the driver first stops a
// measurement the chip may still be running. Close stops it (0.5 s). After
// the chip stopped answering or lost its state (a brown-out returns it to
// idle), the next Read starts it again.
package scd4x

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/scd4x"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Type is the registry key.
const Type = "scd4x"

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "Sensirion SCD40/SCD41 CO₂ sensor, I²C 0x62: co2_ppm, temperature_c, humidity_pct",
		Open:    Open,
		Sim:     Sim,
	})
}

type part struct {
	d       *drv.I2C
	dev     *scd4x.Dev
	restart bool
}

// Open opens the part through h and starts periodic measurement.
func Open(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	var o struct{}
	if err := drv.Options(p, &o); err != nil {
		return nil, err
	}
	d, err := drv.OpenI2C(p, h, scd4x.SensorAddress, []uint16{scd4x.SensorAddress})
	if err != nil {
		return nil, err
	}
	s := &part{d: d}
	if err := s.start(); err != nil {
		_ = d.Close()
		return nil, err
	}
	return s, nil
}

func (s *part) start() error {
	s.d.Tap.Reset()
	dev, err := scd4x.NewI2C(s.d.Bus, s.d.Addr)
	if err != nil {
		return s.d.Err("start periodic measurement", err)
	}
	s.dev = dev
	return nil
}

// probe asks the chip for its data-ready status (get_data_ready_status),
// so that a chip that stopped answering fails at once rather than after
// periph's 6 s of polling; periph's Sense then waits for the data.
func (s *part) probe() error {
	var r [3]byte
	if err := s.d.Bus.Tx(s.d.Addr, []byte{0xe4, 0xb8}, r[:]); err != nil {
		return s.d.Err("get the data-ready status", err)
	}
	if sim.SensirionCRC(r[:2]) != r[2] {
		return fmt.Errorf("%s: data-ready status % x: CRC mismatch: %w; check the wiring and the pull-ups", s.d.Label, r, sensors.ErrCorrupt)
	}
	return nil
}

// Read returns the latest measurement, waiting for it (up to 5 s) when
// the last Read took the previous one.
func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	if s.restart {
		if err := s.start(); err != nil {
			return nil, err
		}
		s.restart = false
	}
	s.d.Tap.Reset()
	if err := s.probe(); err != nil {
		s.restart = errors.Is(err, sensors.ErrNoDevice)
		return nil, err
	}
	var env scd4x.Env
	if err := s.dev.Sense(&env); err != nil {
		switch {
		case s.d.Tap.Cause(nil) != nil:
			s.restart = true
			return nil, s.d.Err("read the measurement", err)
		case strings.Contains(err.Error(), "crc"):
			return nil, fmt.Errorf("%s: read the measurement: %w: %w; check the wiring and the pull-ups", s.d.Label, err, sensors.ErrCorrupt)
		default:
			// Typically no data within 6 s: the chip is idle (it was reset).
			s.restart = true
			return nil, fmt.Errorf("%s: read the measurement: %w; it will be restarted", s.d.Label, err)
		}
	}
	v := sensors.Values{
		"co2_ppm":       float64(env.CO2),
		"temperature_c": drv.Celsius(env.Temperature),
		"humidity_pct":  float64(env.Humidity) / float64(physic.PercentRH),
	}
	v, err := drv.Checked(v, map[string][2]float64{"co2_ppm": {0, 40000}, "temperature_c": {-10, 60}, "humidity_pct": {0, 100}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.d.Label, err)
	}
	return v, nil
}

// Close stops periodic measurement and closes the bus.
func (s *part) Close() error {
	s.d.Tap.Reset()
	err := s.dev.Halt()
	if err != nil {
		err = s.d.Err("stop periodic measurement", err)
	}
	if cerr := s.d.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("%s: close the bus: %w", s.d.Label, cerr)
	}
	return err
}

// Sim returns a simulated SCD4x (sim.SCD4x) at 600 ppm, 21 °C and 45 %RH
// on a simulated bus.
func Sim(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	chip, err := sim.NewSCD4x(600, 21, 45)
	if err != nil {
		return sensors.Host{}, nil, err
	}
	h, _ := drv.SimI2C(p, scd4x.SensorAddress, chip)
	return h, chip, nil
}
