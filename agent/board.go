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
	"github.com/iotagent/iotagent/sensors/contact"
	"github.com/iotagent/iotagent/sensors/output"
	"github.com/iotagent/iotagent/sensors/sim"
)

// NeedsHost reports whether cfg uses real GPIO or I2C, so that the caller
// (only cmd/ does this) must initialise periph's drivers first
// (cmd/iotagent's initHost: the Raspberry Pi's, not host.Init's every board).
func NeedsHost(cfg config.Config) bool {
	for _, p := range cfg.DeviceParts() {
		if !p.Sim && p.Type != config.TypePush {
			return true
		}
	}
	return false
}

// OpenHardware opens the parts that cfg describes: real ones through
// periph.io (after host.Init) and the sensors registry, or simulated ones
// that named pipes under the state dir drive. Simulated parts need
// Hardware.Run. A sampled part that does not open is not an error here:
// its reads report why (reported.sensors.<name>.error) and it is opened
// again on its next read.
func OpenHardware(cfg config.Config) (_ *Hardware, err error) {
	hw := &Hardware{Inputs: map[string]sensors.Input{}, Samplers: map[string]sensors.Sampler{}, Outputs: map[string]sensors.Output{}}
	var closers []func() error
	var feeds []func(ctx context.Context) error
	defer func() {
		if err != nil {
			for _, c := range closers {
				_ = c()
			}
		}
	}()
	for _, p := range cfg.DeviceParts() {
		switch p.Type {
		case config.TypePush:
		case config.TypeInput:
			pin, feed, err := inputPin(p.Name, p.Part, hw.simRejected)
			if err != nil {
				return nil, err
			}
			in, err := contact.New(p.Name, pin, contact.Opts{ActiveLow: p.ActiveLow, Pull: pull(p.Pull),
				Debounce: time.Duration(p.DebounceMs) * time.Millisecond})
			if err != nil {
				return nil, fmt.Errorf("input %s: %w", p.Name, err)
			}
			hw.Inputs[p.Name] = in
			feeds = append(feeds, feed)
		case config.TypeOutput:
			var pin gpio.PinOut
			if p.Sim {
				pin = sim.NewOutputPin(p.Name)
			} else if pin = gpioreg.ByName(p.Pin); pin == nil {
				return nil, fmt.Errorf("output %s: %w", p.Name, noPin(p.Pin))
			}
			out, err := output.New(p.Name, pin, p.ActiveLow)
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", p.Name, err)
			}
			hw.Outputs[p.Name] = out
		default:
			s, feed, err := openSampled(p, hw.simRejected)
			if err != nil {
				return nil, err
			}
			hw.Samplers[p.Name] = s
			closers = append(closers, s.Close)
			feeds = append(feeds, feed)
		}
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

// openSampled returns the sampler of a registry part and, for a simulated
// one, the feed that sets its readings from its named pipe
// ("temperature_c=25"; a bare number sets temperature_c).
func openSampled(p config.NamedPart, reject func(fifo, line string, err error)) (sensors.Sampler, func(context.Context) error, error) {
	d, ok := sensors.Lookup(p.Type)
	if !ok {
		return nil, nil, fmt.Errorf("part %s: %w: %q", p.Name, ErrUnknownType, p.Type)
	}
	sp := sensors.Part{Name: p.Name, Type: p.Type, Bus: p.Bus, Address: uint16(p.Address), Device: p.Device, Sim: p.Sim, Options: p.Options}
	host := sensors.Host{OpenI2C: func(bus string) (i2c.BusCloser, error) {
		b, err := i2creg.Open(bus)
		if err != nil {
			return nil, fmt.Errorf("open I2C bus %q (is I2C enabled, and may this user use /dev/i2c-*?): %w", bus, err)
		}
		return b, nil
	}}
	var feed func(context.Context) error
	var simClose func() error
	if p.Sim {
		if d.Sim == nil {
			return nil, nil, fmt.Errorf("part %s: type %q has no simulation", p.Name, p.Type)
		}
		h, ctl, err := d.Sim(sp)
		if err != nil {
			return nil, nil, fmt.Errorf("part %s: simulation: %w", p.Name, err)
		}
		host, simClose = h, ctl.Close
		for k, v := range p.SimValues {
			if err := ctl.Set(k, v); err != nil {
				_ = ctl.Close()
				return nil, nil, fmt.Errorf("part %s: sim_values.%s: %w", p.Name, k, err)
			}
		}
		feed = func(ctx context.Context) error {
			if err := os.MkdirAll(filepath.Dir(p.SimFIFO), 0o700); err != nil {
				return err
			}
			return sim.FeedFIFO(ctx, p.SimFIFO, func(line string) {
				k, v, ok := strings.Cut(line, "=")
				if !ok {
					k, v = "temperature_c", line
				}
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					reject(p.SimFIFO, line, fmt.Errorf("want READING=NUMBER, e.g. temperature_c=25: %w", err))
					return
				}
				if err := ctl.Set(strings.TrimSpace(k), f); err != nil {
					reject(p.SimFIFO, line, err)
				}
			})
		}
	}
	return &lazySampler{open: func(ctx context.Context) (sensors.Sampler, error) { return d.Open(ctx, sp, host) }, simClose: simClose}, feed, nil
}

// ErrUnknownType is a part type that no driver in this binary registered.
var ErrUnknownType = errors.New("no driver registered for the type")

// lazySampler opens its part on the first read, and again on the read
// after one that failed to open, so that a part absent at start is
// reported, not fatal, and found once it is fitted.
type lazySampler struct {
	open     func(ctx context.Context) (sensors.Sampler, error)
	s        sensors.Sampler
	simClose func() error
}

func (l *lazySampler) Read(ctx context.Context) (sensors.Values, error) {
	if l.s == nil {
		s, err := l.open(ctx)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		l.s = s
	}
	return l.s.Read(ctx)
}

func (l *lazySampler) Close() error {
	var errs []error
	if l.s != nil {
		errs = append(errs, l.s.Close())
	}
	if l.simClose != nil {
		errs = append(errs, l.simClose())
	}
	return errors.Join(errs...)
}

// inputPin returns the pin behind a digital input and, for a simulated
// one, the feed that drives it from its named pipe ("1"/"0", "on"/"off",
// "true"/"false": the sensor's logical state).
func inputPin(name string, in config.Part, reject func(fifo, line string, err error)) (gpio.PinIn, func(context.Context) error, error) {
	if !in.Sim {
		p := gpioreg.ByName(in.Pin)
		if p == nil {
			return nil, nil, fmt.Errorf("input %s: %w", name, noPin(in.Pin))
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
			default:
				reject(in.SimFIFO, line, errors.New("want 1 or 0 (on/off, true/false, high/low)"))
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
