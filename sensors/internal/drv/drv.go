// Package drv holds what the registry's drivers share: strict decoding of
// a part's options, opening its I²C bus with errors that name the part and
// say what to check, a bus tap that keeps the bus error periph's drivers
// hide, and range checks for readings.
package drv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Options decodes p.Options into v, which holds the defaults. Empty or
// null options keep the defaults. Unknown keys, a value of the wrong type
// and trailing data are errors that name the part and the key.
func Options(p sensors.Part, v any) error {
	raw := bytes.TrimSpace(p.Options)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: options: %s: %w", Label(p), strings.TrimPrefix(err.Error(), "json: "), sensors.ErrOptions)
	}
	if dec.More() {
		return fmt.Errorf("%s: options: data after the object: %w", Label(p), sensors.ErrOptions)
	}
	if _, err := dec.Token(); err == nil {
		return fmt.Errorf("%s: options: data after the object: %w", Label(p), sensors.ErrOptions)
	}
	return nil
}

// Label names a part in errors: `part "soil" (ads1x15)`.
func Label(p sensors.Part) string {
	return fmt.Sprintf("part %q (%s)", p.Name, p.Type)
}

// BusName is how an error names an I²C bus.
func BusName(bus string) string {
	if bus == "" {
		return "the first I²C bus"
	}
	return fmt.Sprintf("I²C bus %q", bus)
}

// I2CLabel names an I²C part in errors: `part "soil" (ads1x15 at 0x48 on
// I²C bus "1")`.
func I2CLabel(p sensors.Part, addr uint16) string {
	return fmt.Sprintf("part %q (%s at %#02x on %s)", p.Name, p.Type, addr, BusName(p.Bus))
}

// I2CHint is what to check when an I²C part does not answer.
const I2CHint = "check the wiring (SDA GPIO2 pin 3, SCL GPIO3 pin 5, 3.3 V, GND), the address (i2cdetect -y 1 lists what answers) and the pull-ups (most breakout boards have them)"

// I2C is an opened I²C part: its bus (behind a Tap), address and label.
type I2C struct {
	Bus   i2c.BusCloser
	Tap   *Tap
	Addr  uint16
	Label string
}

// Close closes the bus.
func (d *I2C) Close() error { return d.Bus.Close() }

// OpenI2C resolves p's address (def when zero; it must be one of valid)
// and opens its bus through h.
func OpenI2C(p sensors.Part, h sensors.Host, def uint16, valid []uint16) (*I2C, error) {
	addr := p.Address
	if addr == 0 {
		addr = def
	}
	label := I2CLabel(p, addr)
	if !slices.Contains(valid, addr) {
		v := make([]string, len(valid))
		for i, a := range valid {
			v[i] = fmt.Sprintf("%#02x", a)
		}
		return nil, fmt.Errorf("%s: a %s answers at %s, not %#02x: %w", label, p.Type, strings.Join(v, ", "), addr, sensors.ErrOptions)
	}
	if h.OpenI2C == nil {
		return nil, fmt.Errorf("%s: this host has no I²C (periph's drivers not initialised): %w", label, sensors.ErrNoDevice)
	}
	bus, err := h.OpenI2C(p.Bus)
	if err != nil {
		return nil, fmt.Errorf("%s: open %s: %w: %w; check that I²C is on (dtparam=i2c_arm=on in /boot/firmware/config.txt, then reboot), that /dev/i2c-* exists and that this user may open it (group i2c)", label, BusName(p.Bus), sensors.ErrNoDevice, err)
	}
	tap := &Tap{Bus: bus}
	return &I2C{Bus: tapCloser{tap, bus}, Tap: tap, Addr: addr, Label: label}, nil
}

// Err formats a failed step of d: the bus error behind err when the tap
// saw one (periph's drivers often replace it by their own text), marked
// ErrNoDevice with what to check when the device did not acknowledge.
func (d *I2C) Err(step string, err error) error {
	cause := d.Tap.Cause(err)
	if IsNACK(cause) {
		return fmt.Errorf("%s: %s: %w (NACK): %w; %s", d.Label, step, sensors.ErrNoDevice, cause, I2CHint)
	}
	return fmt.Errorf("%s: %s: %w", d.Label, step, cause)
}

// IsNACK reports whether err is a device's missing acknowledge: ENXIO or
// EREMOTEIO from Linux (periph's sysfs-i2c keeps only their text), or the
// simulated bus's ErrNACK.
func IsNACK(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, sim.ErrNACK) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "remote I/O error") || strings.Contains(s, "no such device or address")
}

// Tap sits between a periph driver and the bus and keeps the last bus
// error, which the driver may format away.
type Tap struct {
	Bus i2c.Bus

	mu  sync.Mutex
	err error
}

// Reset forgets the last error; call it before each step.
func (t *Tap) Reset() {
	t.mu.Lock()
	t.err = nil
	t.mu.Unlock()
}

// Cause returns the bus error seen since the last Reset, else err.
func (t *Tap) Cause(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	return err
}

// Tx implements i2c.Bus.
func (t *Tap) Tx(addr uint16, w, r []byte) error {
	err := t.Bus.Tx(addr, w, r)
	if err != nil {
		t.mu.Lock()
		t.err = err
		t.mu.Unlock()
	}
	return err
}

// SetSpeed implements i2c.Bus.
func (t *Tap) SetSpeed(f physic.Frequency) error { return t.Bus.SetSpeed(f) }

func (t *Tap) String() string { return t.Bus.String() }

type tapCloser struct {
	*Tap
	c i2c.BusCloser
}

func (t tapCloser) Close() error { return t.c.Close() }

// Check returns an error wrapping ErrImplausible when v is not finite or
// outside lo..hi.
func Check(name string, v, lo, hi float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < lo || v > hi {
		return fmt.Errorf("%s = %v, outside %v..%v: %w", name, v, lo, hi, sensors.ErrImplausible)
	}
	return nil
}

// Celsius converts a physic.Temperature to °C.
func Celsius(t physic.Temperature) float64 {
	return float64(t-physic.ZeroCelsius) / float64(physic.Celsius)
}

// SimI2C returns a Host whose every I²C bus is one simulated bus with
// chip at p's address (def when zero), and that bus.
func SimI2C(p sensors.Part, def uint16, chip sim.Device) (sensors.Host, *sim.I2CBus) {
	addr := p.Address
	if addr == 0 {
		addr = def
	}
	bus := sim.NewI2CBus(p.Type)
	bus.Attach(addr, chip)
	return sensors.Host{OpenI2C: func(string) (i2c.BusCloser, error) { return bus, nil }}, bus
}

// ReadReg16 reads a big-endian 16-bit register.
func (d *I2C) ReadReg16(reg byte) (uint16, error) {
	var b [2]byte
	if err := d.Bus.Tx(d.Addr, []byte{reg}, b[:]); err != nil {
		return 0, err
	}
	return uint16(b[0])<<8 | uint16(b[1]), nil
}

// Checked returns v when every reading is finite and within its range.
func Checked(v sensors.Values, ranges map[string][2]float64) (sensors.Values, error) {
	var errs []error
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		x := v[name]
		r, ok := ranges[name]
		if !ok {
			r = [2]float64{math.Inf(-1), math.Inf(1)}
		}
		if err := Check(name, x, r[0], r[1]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

// ValidName reports whether s can name a reading: 1..64 of a-z, 0-9 and
// _ (it becomes a shadow key and a telemetry field).
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
