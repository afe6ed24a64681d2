package sim

import (
	"fmt"
	"math"
	"sync"
)

// ADS1x15 is an emulated TI ADS1115 (16 bits) or ADS1015 (12 bits,
// left-aligned in the 16-bit register) analogue-to-digital converter, a
// Device for an I2CBus, with four inputs AIN0..AIN3. Its registers are
// the datasheet's: conversion (0x00), config (0x01, power-on 0x8583), and
// the comparator thresholds (0x02, 0x03). Writing config with OS set in
// single-shot mode converts the input the MUX selects (AINx against GND, or
// one of the four differential pairs) at the PGA's full scale (±6.144 V
// down to ±0.256 V); a voltage beyond full scale saturates at the code's
// end, as on the chip.
type ADS1x15 struct {
	bits int // 16 or 12
	vdd  float64

	mu   sync.Mutex
	ain  [4]float64
	regs [4]uint16
	ptr  byte
}

// NewADS1115 returns an ADS1115 at power-on powered from vdd volts.
func NewADS1115(vdd float64) *ADS1x15 { return newADS(16, vdd) }

// NewADS1015 returns an ADS1015 at power-on powered from vdd volts.
func NewADS1015(vdd float64) *ADS1x15 { return newADS(12, vdd) }

func newADS(bits int, vdd float64) *ADS1x15 {
	return &ADS1x15{bits: bits, vdd: vdd, regs: [4]uint16{0, 0x8583, 0x8000, 0x7fff}}
}

// ADSFullScale returns the full scale in volts of a PGA setting (config
// bits 11..9).
func ADSFullScale(pga int) float64 {
	return []float64{6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256}[pga&7]
}

// SetInput sets the voltage on AINn (n 0..3) against GND; an input can
// be driven from GND − 0.3 V to VDD + 0.3 V.
func (a *ADS1x15) SetInput(n int, volts float64) error {
	if n < 0 || n > 3 {
		return fmt.Errorf("sim ads1x15: no input AIN%d", n)
	}
	if err := checkRange("ads1x15", fmt.Sprintf("AIN%d V", n), volts, -0.3, a.vdd+0.3); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ain[n] = volts
	return nil
}

// Input returns the voltage on AINn.
func (a *ADS1x15) Input(n int) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ain[n&3]
}

// Set is SetInput for the names "ain0_v".."ain3_v".
func (a *ADS1x15) Set(name string, v float64) error {
	// Not fmt.Sscanf: it would link fmt's whole scanner into the agent.
	if len(name) != len("ain0_v") || name[:3] != "ain" || name[3] < '0' || name[3] > '3' || name[4:] != "_v" {
		return fmt.Errorf("sim ads1x15: no reading %q (it has ain0_v..ain3_v)", name)
	}
	return a.SetInput(int(name[3]-'0'), v)
}

// Close implements sensors.SimControl; it does nothing.
func (a *ADS1x15) Close() error { return nil }

// ADSCode is the conversion register for volts at full scale fs with a
// converter of bits (16 or 12, left-aligned).
func ADSCode(volts, fs float64, bits int) uint16 {
	top := float64(int(1) << (bits - 1))
	c := math.Round(volts / fs * top)
	c = min(max(c, -top), top-1)
	return uint16(int16(c) << (16 - bits))
}

// muxInputs returns the positive and negative inputs (-1 is GND) of a MUX
// setting.
func muxInputs(mux int) (int, int) {
	switch mux {
	case 0:
		return 0, 1
	case 1:
		return 0, 3
	case 2:
		return 1, 3
	case 3:
		return 2, 3
	}
	return mux - 4, -1
}

func (a *ADS1x15) convertLocked() {
	cfg := a.regs[1]
	p, n := muxInputs(int(cfg>>12) & 7)
	v := a.ain[p]
	if n >= 0 {
		v -= a.ain[n]
	}
	a.regs[0] = ADSCode(v, ADSFullScale(int(cfg>>9)&7), a.bits)
}

// Tx implements Device: [ptr, msb, lsb] writes a register, [ptr] sets
// the pointer a 2-byte read starts from.
func (a *ADS1x15) Tx(w, r []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(w) > 0 {
		if w[0] > 3 {
			return fmt.Errorf("sim ads1x15: pointer %#x: %w", w[0], errNoRegister)
		}
		a.ptr = w[0]
	}
	switch {
	case len(w) == 3 && a.ptr != 0:
		v := uint16(w[1])<<8 | uint16(w[2])
		if a.ptr == 1 {
			a.regs[1] = v &^ 0x8000
			if v&0x8000 != 0 || v&0x0100 == 0 { // a single shot, or continuous mode
				a.convertLocked()
			}
			a.regs[1] |= 0x8000 // OS reads 1: not converting (the sim converts at once)
		} else {
			a.regs[a.ptr] = v
		}
	case len(w) > 1:
		return fmt.Errorf("sim ads1x15: write % x: %w", w, errNoRegister)
	}
	if len(r) > 0 {
		if a.ptr == 0 && a.regs[1]&0x0100 == 0 {
			a.convertLocked() // continuous mode: always the latest
		}
		v := a.regs[a.ptr]
		r[0] = byte(v >> 8)
		if len(r) > 1 {
			r[1] = byte(v)
			clear(r[2:])
		}
	}
	return nil
}
