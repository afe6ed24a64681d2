package sim

import (
	"fmt"
	"math"
	"sync"
)

// BH1750 is an emulated ROHM BH1750FVI ambient light sensor, a Device for
// an I2CBus. It has no registers, only opcodes: power down (0x00), power on
// (0x01), reset (0x07, clears the data register; ignored in power down), and
// the measurement modes (continuous 0x10, 0x11, 0x13; one time 0x20, 0x21,
// 0x23), after which a 2-byte read returns the count: lux × 1.2 in the
// high-resolution mode, lux × 2.4 in mode 2 (0.5 lx), lux × 1.2 in steps of
// 4 in the low-resolution mode. A one-time measurement powers the chip down.
// The sim converts at once; the driver still waits the conversion time.
type BH1750 struct {
	mu   sync.Mutex
	lux  float64
	on   bool
	mode byte
	data uint16
}

// BH1750MaxLux is the brightest light the chip reports (65535 / 1.2).
const BH1750MaxLux = 65535 / 1.2

// NewBH1750 returns a chip at power-on (powered down) in light of lux.
func NewBH1750(lux float64) (*BH1750, error) {
	b := &BH1750{}
	if err := b.Set("lux", lux); err != nil {
		return nil, err
	}
	return b, nil
}

// Set changes the light the next measurement sees: "lux", 0..54612.
func (b *BH1750) Set(name string, v float64) error {
	if name != "lux" {
		return fmt.Errorf("sim bh1750: no reading %q (it has lux)", name)
	}
	if err := checkRange("bh1750", "lux", v, 0, BH1750MaxLux); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lux = v
	return nil
}

// Close implements sensors.SimControl; it does nothing.
func (b *BH1750) Close() error { return nil }

// BH1750Count is the data register for lux in mode (an opcode).
func BH1750Count(lux float64, mode byte) uint16 {
	var c float64
	switch mode & 0x0f {
	case 0x1: // high resolution mode 2
		c = math.Round(lux * 2.4)
	case 0x3: // low resolution
		c = math.Round(lux*1.2/4) * 4
	default:
		c = math.Round(lux * 1.2)
	}
	return uint16(min(c, 65535))
}

// Tx implements Device.
func (b *BH1750) Tx(w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(w) > 1 {
		return fmt.Errorf("sim bh1750: write % x: one opcode at a time: %w", w, errNoRegister)
	}
	if len(w) == 1 {
		switch op := w[0]; op {
		case 0x00:
			b.on = false
		case 0x01:
			b.on = true
		case 0x07:
			if b.on {
				b.data = 0
			}
		case 0x10, 0x11, 0x13, 0x20, 0x21, 0x23:
			b.mode = op
			b.data = BH1750Count(b.lux, op)
			b.on = op < 0x20
		default:
			return fmt.Errorf("sim bh1750: opcode %#x: %w", op, errNoRegister)
		}
	}
	if len(r) > 0 {
		r[0] = byte(b.data >> 8)
		if len(r) > 1 {
			r[1] = byte(b.data)
			clear(r[2:])
		}
	}
	return nil
}
