// Package drvtest holds the tests every registry driver shares: opening a
// part through the registry on its simulated backend, and the I²C error
// cases (no device at the address, a device that stops answering, a bus
// that does not open, an address the part cannot have, an unknown option).
package drvtest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Open opens p through the registry on its simulated backend (Driver.Sim
// then Driver.Open, as the agent does) and closes both at the end of t.
func Open(t testing.TB, p sensors.Part) (sensors.Sampler, sensors.SimControl) {
	t.Helper()
	d, ok := sensors.Lookup(p.Type)
	if !ok {
		t.Fatalf("driver %q is not registered", p.Type)
	}
	if d.Sim == nil {
		t.Fatalf("driver %q has no Sim", p.Type)
	}
	p.Sim = true
	h, ctl, err := d.Sim(p)
	if err != nil {
		t.Fatalf("Sim(%+v): %v", p, err)
	}
	t.Cleanup(func() {
		if err := ctl.Close(); err != nil {
			t.Errorf("close the sim: %v", err)
		}
	})
	s, err := d.Open(context.Background(), p, h)
	if err != nil {
		t.Fatalf("Open(%+v): %v", p, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, ctl
}

// OpenErr opens p through h and returns the error, failing t if Open
// succeeds.
func OpenErr(t testing.TB, p sensors.Part, h sensors.Host) error {
	t.Helper()
	d, ok := sensors.Lookup(p.Type)
	if !ok {
		t.Fatalf("driver %q is not registered", p.Type)
	}
	s, err := d.Open(context.Background(), p, h)
	if err == nil {
		_ = s.Close()
		t.Fatalf("Open(%+v) succeeded", p)
	}
	return err
}

// Read reads s once and fails t on an error.
func Read(t testing.TB, s sensors.Sampler) sensors.Values {
	t.Helper()
	v, err := s.Read(context.Background())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return v
}

// WantErr fails t unless err wraps target and its text holds every part.
func WantErr(t testing.TB, err, target error, parts ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("error %q does not wrap %q", err, target)
	}
	for _, s := range parts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

// Host returns a Host whose I²C bus is bus.
func Host(bus i2c.BusCloser) sensors.Host {
	return sensors.Host{OpenI2C: func(string) (i2c.BusCloser, error) { return bus, nil }}
}

// I2CCase describes an I²C driver for I2CErrors.
type I2CCase struct {
	Type string
	// Addr is where Chip sits, Other another valid address of the part
	// (0 if it has one address), Invalid one it cannot have.
	Addr, Other, Invalid uint16
	// Chip returns a new simulated chip.
	Chip func() sim.Device
	// Options are valid options for the part (may be nil).
	Options string
}

// I2CErrors runs the error cases every I²C driver shares.
func I2CErrors(t *testing.T, c I2CCase) {
	part := func(addr uint16) sensors.Part {
		return sensors.Part{Name: "probe", Type: c.Type, Bus: "1", Address: addr, Options: json.RawMessage(c.Options)}
	}
	busChip := func() (*sim.I2CBus, sim.Device) {
		b := sim.NewI2CBus("test")
		chip := c.Chip()
		b.Attach(c.Addr, chip)
		return b, chip
	}
	bus := func() *sim.I2CBus { b, _ := busChip(); return b }
	t.Run("no device at the address", func(t *testing.T) {
		// A bus with the chip elsewhere, or (for a part with one
		// address) an empty bus.
		addr, b := c.Other, bus()
		if addr == 0 {
			addr, b = c.Addr, sim.NewI2CBus("empty")
		}
		err := OpenErr(t, part(addr), Host(b))
		WantErr(t, err, sensors.ErrNoDevice, `part "probe"`, c.Type, `I²C bus "1"`, "NACK", "check the wiring", "pull-ups")
		WantErr(t, err, sim.ErrNACK, hex(addr))
	})
	t.Run("an address the part cannot have", func(t *testing.T) {
		err := OpenErr(t, part(c.Invalid), Host(bus()))
		WantErr(t, err, sensors.ErrOptions, `part "probe"`, hex(c.Invalid), hex(c.Addr))
	})
	t.Run("the bus does not open", func(t *testing.T) {
		h := sensors.Host{OpenI2C: func(string) (i2c.BusCloser, error) { return nil, errors.New("no /dev/i2c-1") }}
		err := OpenErr(t, part(c.Addr), h)
		WantErr(t, err, sensors.ErrNoDevice, "no /dev/i2c-1", "dtparam=i2c_arm=on", `part "probe"`)
	})
	t.Run("no I²C on the host", func(t *testing.T) {
		WantErr(t, OpenErr(t, part(c.Addr), sensors.Host{}), sensors.ErrNoDevice, `part "probe"`)
	})
	t.Run("unknown option", func(t *testing.T) {
		p := part(c.Addr)
		p.Options = json.RawMessage(`{"bogus_key": 1}`)
		WantErr(t, OpenErr(t, p, Host(bus())), sensors.ErrOptions, `part "probe"`, `"bogus_key"`)
	})
	t.Run("stops answering", func(t *testing.T) {
		b, chip := busChip()
		d, _ := sensors.Lookup(c.Type)
		s, err := d.Open(context.Background(), part(c.Addr), Host(b))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		Read(t, s)
		b.Detach(c.Addr)
		_, err = s.Read(context.Background())
		if err == nil {
			t.Fatal("Read of a detached chip succeeded")
		}
		WantErr(t, err, sensors.ErrNoDevice, `part "probe"`, hex(c.Addr), "NACK", "check the wiring")
		b.Attach(c.Addr, chip) // the wire is back
		if _, err := s.Read(context.Background()); err != nil {
			t.Errorf("Read after the chip is back: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Run("canceled context", func(t *testing.T) {
		d, _ := sensors.Lookup(c.Type)
		s, err := d.Open(context.Background(), part(c.Addr), Host(bus()))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Read(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Read with a canceled context = %v, want context.Canceled", err)
		}
	})
}

func hex(a uint16) string {
	const digits = "0123456789abcdef"
	return "0x" + string(digits[a>>4&15]) + string(digits[a&15])
}
