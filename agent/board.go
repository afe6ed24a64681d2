package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/bme280"
	"github.com/iotagent/iotagent/sensors/contact"
	"github.com/iotagent/iotagent/sensors/motion"
	"github.com/iotagent/iotagent/sensors/output"
	"github.com/iotagent/iotagent/sensors/sim"
)

// NeedsHost reports whether cfg uses real GPIO or I2C, so that the caller
// (only cmd/ does this) must initialise periph's drivers first
// (cmd/iotagent's initHost: the Raspberry Pi's, not host.Init's every board).
func NeedsHost(cfg config.Config) bool {
	s := cfg.Sensors
	if (s.Motion != nil && s.Motion.Driver == "gpio") || (s.Contact != nil && s.Contact.Driver == "gpio") ||
		(s.BME280 != nil && s.BME280.Driver == "i2c") {
		return true
	}
	for _, o := range s.Outputs {
		if o.Driver == "gpio" {
			return true
		}
	}
	return false
}

// OpenHardware opens the sensors and outputs that cfg describes: real ones
// through periph.io (after host.Init), or simulated ones that named pipes
// under the state dir drive. Simulated parts need Hardware.Run.
func OpenHardware(cfg config.Config) (_ *Hardware, err error) {
	hw := &Hardware{Outputs: map[string]sensors.Output{}}
	var closers []func() error
	var feeds []func(ctx context.Context) error
	defer func() {
		if err != nil {
			for _, c := range closers {
				_ = c()
			}
		}
	}()
	s := cfg.Sensors
	if s.Motion != nil {
		pin, feed, err := inputPin("motion", *s.Motion)
		if err != nil {
			return nil, err
		}
		m, err := motion.New("motion", pin, motion.Opts{ActiveLow: s.Motion.ActiveLow, Pull: pull(s.Motion.Pull),
			Debounce: time.Duration(s.Motion.DebounceMs) * time.Millisecond})
		if err != nil {
			return nil, fmt.Errorf("motion sensor: %w", err)
		}
		hw.Motion = m
		feeds = append(feeds, feed)
	}
	if s.Contact != nil {
		pin, feed, err := inputPin("contact", *s.Contact)
		if err != nil {
			return nil, err
		}
		c, err := contact.New("contact", pin, contact.Opts{ActiveLow: s.Contact.ActiveLow, Pull: pull(s.Contact.Pull),
			Debounce: time.Duration(s.Contact.DebounceMs) * time.Millisecond})
		if err != nil {
			return nil, fmt.Errorf("lid contact: %w", err)
		}
		hw.Contact = c
		feeds = append(feeds, feed)
	}
	if b := s.BME280; b != nil {
		addr := uint16(b.Address)
		var bus i2c.BusCloser
		switch b.Driver {
		case "sim":
			simBus := sim.NewBME280(addr, b.SimTemperatureC, 45, 101.325)
			bus = simBus
			feeds = append(feeds, func(ctx context.Context) error {
				if err := os.MkdirAll(filepath.Dir(b.SimFIFO), 0o700); err != nil {
					return err
				}
				return sim.FeedFIFO(ctx, b.SimFIFO, func(line string) {
					if c, err := strconv.ParseFloat(line, 64); err == nil {
						_ = simBus.SetTemperature(c)
					}
				})
			})
		default:
			real, err := i2creg.Open(b.Bus)
			if err != nil {
				return nil, fmt.Errorf("open I2C bus %s (is I2C enabled, and may this user use /dev/i2c-%s?): %w", b.Bus, b.Bus, err)
			}
			bus = real
		}
		closers = append(closers, bus.Close)
		dev, err := bme280.New("bme280", bus, addr, bme280.Opts{})
		if err != nil {
			return nil, fmt.Errorf("bme280 on bus %s at %#x: %w", b.Bus, addr, err)
		}
		closers = append(closers, dev.Close)
		hw.Env = dev
	}
	for _, o := range s.Outputs {
		var pin gpio.PinOut
		if o.Driver == "sim" {
			pin = sim.NewOutputPin(o.Name)
		} else if pin = gpioreg.ByName(o.Pin); pin == nil {
			return nil, fmt.Errorf("output %s: %w", o.Name, noPin(o.Pin))
		}
		out, err := output.New(o.Name, pin, o.ActiveLow)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", o.Name, err)
		}
		hw.Outputs[o.Name] = out
	}
	hw.Close = func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	hw.Run = func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		for _, f := range feeds {
			if f != nil {
				g.Go(func() error { return f(gctx) })
			}
		}
		// With no simulated parts there is nothing to feed: Wait returns
		// nil at once, which is not a failure (the agent ends only on an
		// error or when ctx ends).
		if err := g.Wait(); err != nil && ctx.Err() == nil {
			return fmt.Errorf("simulated sensors: %w", err)
		}
		return nil
	}
	return hw, nil
}

// inputPin returns the pin behind a digital input and, for a simulated
// one, the feed that drives it from its named pipe ("1"/"0", "on"/"off",
// "true"/"false": the sensor's logical state).
func inputPin(name string, in config.Input) (gpio.PinIn, func(context.Context) error, error) {
	if in.Driver != "sim" {
		p := gpioreg.ByName(in.Pin)
		if p == nil {
			return nil, nil, fmt.Errorf("%s sensor: %w", name, noPin(in.Pin))
		}
		return p, nil, nil
	}
	p := sim.NewInputPin(name)
	p.Set(in.ActiveLow) // idle
	feed := func(ctx context.Context) error {
		if err := os.MkdirAll(filepath.Dir(in.SimFIFO), 0o700); err != nil {
			return err
		}
		return sim.FeedFIFO(ctx, in.SimFIFO, func(line string) {
			switch strings.ToLower(line) {
			case "1", "on", "true", "high":
				p.Set(!in.ActiveLow)
			case "0", "off", "false", "low":
				p.Set(in.ActiveLow)
			}
		})
	}
	return p, feed, nil
}

func noPin(name string) error {
	return fmt.Errorf("GPIO pin %q not found: not a Raspberry Pi, no /dev/gpiochip*, or this user is not in the gpio group", name)
}

func pull(s string) gpio.Pull {
	switch s {
	case "up":
		return gpio.PullUp
	case "none":
		return gpio.Float
	case "down":
		return gpio.PullDown
	}
	return gpio.PullNoChange
}
