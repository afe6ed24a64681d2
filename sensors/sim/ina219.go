package sim

import (
	"fmt"
	"math"
	"sync"
)

// INA219 is an emulated TI INA219 current and power monitor, a Device for
// an I2CBus, with its shunt resistor. Its registers are the datasheet's:
// configuration (0x00, power-on 0x399F, bit 15 resets), shunt voltage
// (0x01, 10 µV), bus voltage (0x02: bits 15..3 in 4 mV, CNVR bit 1, OVF
// bit 0), power (0x03), current (0x04) and calibration (0x05). Current and
// power are computed from the calibration the driver writes, as the chip
// computes them: current = shunt × calibration / 4096, power = current ×
// bus / 5000; they read 0 until it is written. A current whose shunt
// voltage exceeds the configured PGA range saturates and sets OVF.
type INA219 struct {
	shuntOhms float64

	mu    sync.Mutex
	volts float64
	amps  float64
	regs  [6]uint16
	ptr   byte
}

const (
	inaConfig = 0x00
	inaShunt  = 0x01
	inaBus    = 0x02
	inaPower  = 0x03
	inaCurr   = 0x04
	inaCal    = 0x05
)

// NewINA219 returns a chip at power-on with a shuntOhms resistor (0.1 Ω on
// most boards), measuring volts on the bus and amps through the shunt.
func NewINA219(shuntOhms, volts, amps float64) (*INA219, error) {
	if !(shuntOhms > 0) || math.IsInf(shuntOhms, 0) {
		return nil, fmt.Errorf("sim ina219: shunt resistance %v Ω: %w", shuntOhms, ErrOutOfRange)
	}
	c := &INA219{shuntOhms: shuntOhms}
	c.regs[inaConfig] = 0x399F
	if err := c.Set("voltage_v", volts); err != nil {
		return nil, err
	}
	if err := c.Set("current_a", amps); err != nil {
		return nil, err
	}
	return c, nil
}

// busFullScale is the bus voltage range the configuration selects (16 or
// 32 V), within the 26 V the input withstands.
func (c *INA219) busFullScaleLocked() float64 {
	if c.regs[inaConfig]&0x2000 != 0 {
		return 26
	}
	return 16
}

// shuntFullScale is the PGA range in volts (±40 mV × 2^PG).
func (c *INA219) shuntFullScaleLocked() float64 {
	return 0.040 * float64(int(1)<<((c.regs[inaConfig]>>11)&3))
}

// Set changes what the chip measures next: "voltage_v" (0 up to the bus
// range: 16 V, or 26 V in the 32 V range) or "current_a" (the current
// whose shunt voltage is within the PGA range, ±0.32 A × 0.1 Ω / R at
// the widest). power_w is computed by the chip and cannot be set.
func (c *INA219) Set(name string, v float64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch name {
	case "voltage_v":
		if err := checkRange("ina219", "bus voltage V", v, 0, c.busFullScaleLocked()); err != nil {
			return err
		}
		c.volts = v
	case "current_a":
		fs := c.shuntFullScaleLocked() / c.shuntOhms
		if err := checkRange("ina219", "current A", v, -fs, fs); err != nil {
			return err
		}
		c.amps = v
	case "power_w":
		return fmt.Errorf("sim ina219: power_w is computed from voltage_v and current_a; set those")
	default:
		return fmt.Errorf("sim ina219: no reading %q (it has voltage_v, current_a)", name)
	}
	c.convertLocked()
	return nil
}

// Close implements sensors.SimControl; it does nothing.
func (c *INA219) Close() error { return nil }

func (c *INA219) convertLocked() {
	ovf := false
	fs := c.shuntFullScaleLocked()
	shunt := math.Round(c.amps * c.shuntOhms / 10e-6)
	if lim := fs / 10e-6; math.Abs(shunt) > lim {
		shunt = math.Copysign(lim, shunt)
		ovf = true
	}
	bus := math.Round(min(c.volts, c.busFullScaleLocked()) / 0.004)
	cur := int64(shunt) * int64(c.regs[inaCal]) / 4096
	if cur > math.MaxInt16 || cur < math.MinInt16 {
		cur = min(max(cur, math.MinInt16), math.MaxInt16)
		ovf = true
	}
	pw := abs(cur) * int64(bus) / 5000
	if pw > math.MaxUint16 {
		pw = math.MaxUint16
		ovf = true
	}
	c.regs[inaShunt] = uint16(int16(shunt))
	c.regs[inaBus] = uint16(bus)<<3 | 0x2 // CNVR
	if ovf {
		c.regs[inaBus] |= 1
	}
	c.regs[inaCurr] = uint16(int16(cur))
	c.regs[inaPower] = uint16(pw)
}

// Tx implements Device: [reg, msb, lsb] writes the configuration or the
// calibration; [reg] sets the pointer a 2-byte read starts from.
func (c *INA219) Tx(w, r []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(w) > 0 {
		if w[0] > inaCal {
			return fmt.Errorf("sim ina219: register %#x: %w", w[0], errNoRegister)
		}
		c.ptr = w[0]
	}
	switch {
	case len(w) == 3 && c.ptr == inaConfig:
		v := uint16(w[1])<<8 | uint16(w[2])
		if v&0x8000 != 0 {
			c.regs = [6]uint16{inaConfig: 0x399F}
		} else {
			c.regs[inaConfig] = v
		}
		c.convertLocked()
	case len(w) == 3 && c.ptr == inaCal:
		c.regs[inaCal] = (uint16(w[1])<<8 | uint16(w[2])) &^ 1 // bit 0 is read-only 0
		c.convertLocked()
	case len(w) > 1:
		return fmt.Errorf("sim ina219: write % x: %w", w, errNoRegister)
	}
	if len(r) > 0 {
		v := c.regs[c.ptr]
		r[0] = byte(v >> 8)
		if len(r) > 1 {
			r[1] = byte(v)
			clear(r[2:])
		}
	}
	return nil
}
