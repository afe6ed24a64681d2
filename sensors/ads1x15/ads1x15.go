// Package ads1x15 registers the "ads1x15" part: a TI ADS1115 (16 bits) or
// ADS1015 (12 bits) analogue-to-digital converter on I²C at 0x48..0x4B,
// read through periph.io's ads1x15 driver. Each configured channel is one
// reading: the input's voltage times scale plus offset, under the
// channel's name (a soil moisture probe as soil_pct, a 4..20 mA loop as
// level_m).
//
// Options:
//
//	{"chip": "ads1115", "channels": [
//	  {"input": "0", "name": "soil_pct", "scale": -62.5, "offset": 175, "full_scale_v": 4.096}]}
//
// chip is "ads1115" (the default) or "ads1015". input is "0".."3" (AINx
// against GND) or a differential pair "0-1", "0-3", "1-3", "2-3". name
// defaults to ain0_v (ain0_1_v for a pair). scale (default 1, not 0) and
// offset (default 0) map volts to the reading. full_scale_v (default
// 4.096) picks the gain: the smallest of ±6.144, 4.096, 2.048, 1.024,
// 0.512, 0.256 V that holds it. An input at the end of the range (beyond
// full scale) is an error, not a clipped value. Each channel takes one
// single-shot conversion at 128 samples/s (8 ms).
package ads1x15

import (
	"context"
	"fmt"
	"math"
	"strings"

	"periph.io/x/conn/v3/analog"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ads1x15"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Type is the registry key.
const Type = "ads1x15"

// DefaultAddr is the address with ADDR to GND.
const DefaultAddr = 0x48

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "TI ADS1115/ADS1015 ADC, I²C 0x48..0x4b: one scaled reading per channel",
		Open:    Open,
		Sim:     Sim,
	})
}

// Channel is one configured input.
type Channel struct {
	Input      string   `json:"input"`
	Name       string   `json:"name"`
	Scale      *float64 `json:"scale"`
	Offset     float64  `json:"offset"`
	FullScaleV float64  `json:"full_scale_v"`
}

type options struct {
	Chip     string    `json:"chip"`
	Channels []Channel `json:"channels"`
}

var inputs = map[string]ads1x15.Channel{
	"0": ads1x15.Channel0, "1": ads1x15.Channel1, "2": ads1x15.Channel2, "3": ads1x15.Channel3,
	"0-1": ads1x15.Channel0Minus1, "0-3": ads1x15.Channel0Minus3, "1-3": ads1x15.Channel1Minus3, "2-3": ads1x15.Channel2Minus3,
}

var fullScales = []float64{0.256, 0.512, 1.024, 2.048, 4.096, 6.144}

type channel struct {
	Channel
	scale float64
	fs    float64 // the gain's full scale
	pos   int     // AIN of the input (the positive one of a pair)
	neg   int     // AIN of the negative input of a pair, else -1
	pin   ads1x15.PinADC
}

func parse(p sensors.Part) (options, []*channel, error) {
	o := options{Chip: "ads1115"}
	if err := drv.Options(p, &o); err != nil {
		return o, nil, err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: options: %s: %w", drv.Label(p), fmt.Sprintf(format, a...), sensors.ErrOptions)
	}
	if o.Chip != "ads1115" && o.Chip != "ads1015" {
		return o, nil, bad("chip %q: want ads1115 or ads1015", o.Chip)
	}
	if len(o.Channels) == 0 || len(o.Channels) > 8 {
		return o, nil, bad("channels: want 1 to 8, have %d", len(o.Channels))
	}
	seen := map[string]bool{}
	var chans []*channel
	for i, c := range o.Channels {
		if _, ok := inputs[c.Input]; !ok {
			return o, nil, bad(`channels[%d].input %q: want "0".."3" or "0-1", "0-3", "1-3", "2-3"`, i, c.Input)
		}
		if c.Name == "" {
			c.Name = "ain" + strings.ReplaceAll(c.Input, "-", "_") + "_v"
		}
		if !drv.ValidName(c.Name) {
			return o, nil, bad("channels[%d].name %q: want 1..64 of a-z, 0-9 and _", i, c.Name)
		}
		if seen[c.Name] {
			return o, nil, bad("channels[%d].name %q: used twice", i, c.Name)
		}
		seen[c.Name] = true
		ch := &channel{Channel: c, scale: 1, neg: -1}
		if c.Scale != nil {
			ch.scale = *c.Scale
		}
		if ch.scale == 0 {
			return o, nil, bad("channels[%d].scale is 0: the reading would not depend on the input", i)
		}
		if c.FullScaleV == 0 {
			c.FullScaleV = 4.096
		}
		if !(c.FullScaleV > 0 && c.FullScaleV <= 6.144) {
			return o, nil, bad("channels[%d].full_scale_v %v: want more than 0 and at most 6.144", i, c.FullScaleV)
		}
		ch.FullScaleV = c.FullScaleV
		for _, fs := range fullScales {
			if fs >= c.FullScaleV {
				ch.fs = fs
				break
			}
		}
		pos, neg, pair := strings.Cut(c.Input, "-")
		ch.pos = int(pos[0] - '0')
		if pair {
			ch.neg = int(neg[0] - '0')
		}
		chans = append(chans, ch)
	}
	return o, chans, nil
}

type part struct {
	d     *drv.I2C
	dev   *ads1x15.Dev
	chans []*channel
	top   int32 // the highest code (32767, or 2047<<4 on an ADS1015)
}

// Open opens the part through h.
func Open(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	o, chans, err := parse(p)
	if err != nil {
		return nil, err
	}
	d, err := drv.OpenI2C(p, h, DefaultAddr, []uint16{0x48, 0x49, 0x4a, 0x4b})
	if err != nil {
		return nil, err
	}
	s := &part{d: d, chans: chans, top: math.MaxInt16}
	opts := &ads1x15.Opts{I2cAddress: d.Addr}
	if o.Chip == "ads1015" {
		s.dev, err = ads1x15.NewADS1015(d.Bus, opts)
		s.top = 2047 << 4
	} else {
		s.dev, err = ads1x15.NewADS1115(d.Bus, opts)
	}
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("%s: %w", d.Label, err)
	}
	// periph's New does not talk to the chip: read the config register
	// so that a missing chip is found now.
	d.Tap.Reset()
	if _, err := d.ReadReg16(0x01); err != nil {
		_ = d.Close()
		return nil, d.Err("read the configuration", err)
	}
	for _, c := range chans {
		c.pin, err = s.dev.PinForChannel(inputs[c.Input], physic.ElectricPotential(c.FullScaleV*float64(physic.Volt)), 128*physic.Hertz, ads1x15.BestQuality)
		if err != nil {
			_ = d.Close()
			return nil, fmt.Errorf("%s: channel %s: %w: %w", d.Label, c.Name, err, sensors.ErrOptions)
		}
	}
	return s, nil
}

// Read converts every channel.
func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	v := sensors.Values{}
	for _, c := range s.chans {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", s.d.Label, err)
		}
		s.d.Tap.Reset()
		sample, err := c.pin.Read()
		if err != nil {
			return nil, s.d.Err("convert input "+c.Input, err)
		}
		if err := s.check(c, sample); err != nil {
			return nil, err
		}
		x := float64(sample.V)/float64(physic.Volt)*c.scale + c.Offset
		if err := drv.Check(c.Name, x, -math.MaxFloat64, math.MaxFloat64); err != nil {
			return nil, fmt.Errorf("%s: %w", s.d.Label, err)
		}
		v[c.Name] = x
	}
	return v, nil
}

func (s *part) check(c *channel, a analog.Sample) error {
	if a.Raw >= s.top || a.Raw <= math.MinInt16 {
		return fmt.Errorf("%s: input %s (%s) at the end of its ±%v V range: beyond full scale (raise full_scale_v, or check the input's wiring): %w",
			s.d.Label, c.Input, c.Name, c.fs, sensors.ErrImplausible)
	}
	return nil
}

// Close closes the bus (the chip powers down after each single shot).
func (s *part) Close() error {
	if err := s.d.Close(); err != nil {
		return fmt.Errorf("%s: close the bus: %w", s.d.Label, err)
	}
	return nil
}

// control sets the simulated inputs from readings: the voltage that the
// channel's scale and offset map to the value.
type control struct {
	chip  *sim.ADS1x15
	chans []*channel
}

// Sim returns a simulated ADS1115 or ADS1015 (sim.ADS1x15, VDD 3.3 V,
// every input at 1.65 V) on a simulated bus. Its Set takes the part's
// reading names, or ain0_v..ain3_v for an input's voltage.
func Sim(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	o, chans, err := parse(p)
	if err != nil {
		return sensors.Host{}, nil, err
	}
	chip := sim.NewADS1115(3.3)
	if o.Chip == "ads1015" {
		chip = sim.NewADS1015(3.3)
	}
	for n := range 4 {
		if err := chip.SetInput(n, 1.65); err != nil {
			return sensors.Host{}, nil, err
		}
	}
	h, _ := drv.SimI2C(p, DefaultAddr, chip)
	return h, &control{chip: chip, chans: chans}, nil
}

// Set implements sensors.SimControl. A value whose voltage is beyond the
// channel's full scale or the input's range is refused.
func (c *control) Set(name string, v float64) error {
	for _, ch := range c.chans {
		if ch.Name != name {
			continue
		}
		volts := (v - ch.Offset) / ch.scale
		if math.IsNaN(volts) || math.Abs(volts) >= ch.fs {
			return fmt.Errorf("sim ads1x15: set %s to %v: %v V is beyond the ±%v V full scale: %w", name, v, volts, ch.fs, sim.ErrOutOfRange)
		}
		if ch.neg >= 0 {
			volts += c.chip.Input(ch.neg)
		}
		return c.chip.SetInput(ch.pos, volts)
	}
	return c.chip.Set(name, v)
}

// Close implements sensors.SimControl.
func (c *control) Close() error { return nil }
