package agent

import (
	"context"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/i2c"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/bme280"
	"github.com/iotagent/iotagent/sensors/sim"
)

var fallbackOnce sync.Once

// RegisterFallbacks registers the "bme280" type through the existing
// sensors/bme280 package unless a driver of that type is registered
// already (the registry's own, from sensors/all). It is called after
// every package's init (from main, or a test), so that whichever order
// packages initialise in, the registry's driver wins.
//
// TODO(issue 15): delete once sensors/all registers bme280.
func RegisterFallbacks() {
	fallbackOnce.Do(func() {
		if _, ok := sensors.Lookup("bme280"); ok {
			return
		}
		sensors.Register(sensors.Driver{
			Type:    "bme280",
			Summary: "Bosch BME280 temperature, humidity and pressure on I²C (0x76, 0x77)",
			Open: func(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
				addr := p.Address
				if addr == 0 {
					addr = bme280.AddrLow
				}
				bus, err := h.OpenI2C(p.Bus)
				if err != nil {
					return nil, err
				}
				dev, err := bme280.New(p.Name, bus, addr, bme280.Opts{})
				if err != nil {
					_ = bus.Close()
					return nil, fmt.Errorf("bme280 on bus %q at %#x: %w", p.Bus, addr, err)
				}
				return &bmeSampler{envSampler{dev}, dev, bus}, nil
			},
			Sim: func(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
				addr := p.Address
				if addr == 0 {
					addr = bme280.AddrLow
				}
				bus := sim.NewBME280(addr, 21, 45, 101.325)
				h := sensors.Host{OpenI2C: func(string) (i2c.BusCloser, error) { return bus, nil }}
				return h, bmeSim{bus}, nil
			},
		})
	})
}

// bmeSampler is a BME280 as a Sampler that owns its bus.
type bmeSampler struct {
	envSampler
	dev *bme280.BME280
	bus i2c.BusCloser
}

func (b *bmeSampler) Close() error {
	err := b.dev.Close()
	if cerr := b.bus.Close(); err == nil {
		err = cerr
	}
	return err
}

// bmeSim sets the simulated BME280's readings.
type bmeSim struct{ bus *sim.BME280Bus }

func (s bmeSim) Set(name string, v float64) error {
	switch name {
	case "temperature_c":
		return s.bus.SetTemperature(v)
	case "humidity_pct":
		return s.bus.SetHumidity(v)
	case "pressure_kpa":
		return s.bus.SetPressure(v)
	}
	return fmt.Errorf("bme280 has no reading %q (temperature_c, humidity_pct, pressure_kpa)", name)
}

func (s bmeSim) Close() error { return nil }
