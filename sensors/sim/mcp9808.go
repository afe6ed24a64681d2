package sim

import (
	"errors"
	"fmt"
	"math"
	"sync"
)

// MCP9808 is an emulated Microchip MCP9808 temperature sensor, a Device
// for an I2CBus. It models the registers periph's mcp9808 driver uses:
// configuration (0x01, shutdown bit 8), the alert limits (0x02..0x04),
// the ambient temperature (0x05: 13-bit two's complement in 1/16 °C, with
// the Ta≥Tcrit, Ta>Tupper and Ta<Tlower flags in bits 15..13), the
// manufacturer id (0x06, 0x0054), the device id (0x07, 0x0400) and the
// resolution (0x08: 0.5, 0.25, 0.125 or 0.0625 °C). A reading is quantised
// to the resolution as the chip truncates; in shutdown the temperature
// register keeps the last conversion.
type MCP9808 struct {
	mu     sync.Mutex
	tempC  float64
	ta     uint16 // last conversion, without flags
	regs   [9]uint16
	ptr    byte
	device uint16
}

// MCP9808 registers.
const (
	mcpConfig = 0x01
	mcpUpper  = 0x02
	mcpLower  = 0x03
	mcpCrit   = 0x04
	mcpTa     = 0x05
	mcpManuf  = 0x06
	mcpDevID  = 0x07
	mcpRes    = 0x08

	mcpShutdown = 0x0100
)

// NewMCP9808 returns a chip at power-on (continuous conversion, 0.0625 °C)
// reading tempC (-40..125 °C).
func NewMCP9808(tempC float64) (*MCP9808, error) {
	m := &MCP9808{device: 0x0400}
	m.regs[mcpManuf] = 0x0054
	m.regs[mcpRes] = 3
	if err := m.Set("temperature_c", tempC); err != nil {
		return nil, err
	}
	return m, nil
}

// SetDeviceID changes the device id register (0x07), to emulate another
// chip at the MCP9808's address.
func (m *MCP9808) SetDeviceID(id uint16) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.device = id
}

// Set changes what the next conversion reads: "temperature_c", -40..125 °C.
func (m *MCP9808) Set(name string, v float64) error {
	if name != "temperature_c" {
		return fmt.Errorf("sim mcp9808: no reading %q (it has temperature_c)", name)
	}
	if err := checkRange("mcp9808", "temperature °C", v, -40, 125); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tempC = v
	m.convertLocked()
	return nil
}

// Close implements sensors.SimControl; it does nothing.
func (m *MCP9808) Close() error { return nil }

// MCP9808TaBits encodes °C as the ambient temperature register does at
// the given resolution (0..3), without the flags: the value truncated to
// the resolution, in 1/16 °C, 13-bit two's complement.
func MCP9808TaBits(c float64, res int) uint16 {
	step := 8 >> res // in 1/16 °C: 8, 4, 2, 1
	n := int(math.Floor(c*16/float64(step))) * step
	return uint16(n) & 0x1fff
}

func (m *MCP9808) convertLocked() {
	if m.regs[mcpConfig]&mcpShutdown != 0 {
		return
	}
	m.ta = MCP9808TaBits(m.tempC, int(m.regs[mcpRes]&3))
}

// taLocked is the temperature register with its flags (limits compared in
// whole 0.25 °C steps, as the limit registers hold them).
func (m *MCP9808) taLocked() uint16 {
	signed := func(v uint16) int { return int(int16(v<<3)) >> 3 } // 13-bit two's complement
	t := signed(m.ta)
	v := m.ta
	if t >= signed(m.regs[mcpCrit]&0x1ffc) {
		v |= 0x8000
	}
	if t > signed(m.regs[mcpUpper]&0x1ffc) {
		v |= 0x4000
	}
	if t < signed(m.regs[mcpLower]&0x1ffc) {
		v |= 0x2000
	}
	return v
}

// Tx implements Device: a write of [reg, msb, lsb] (or [reg, v] for the
// 8-bit resolution register) writes a register; [reg] sets the pointer
// that a read starts from.
func (m *MCP9808) Tx(w, r []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(w) > 0 {
		m.ptr = w[0]
		if m.ptr > mcpRes {
			return fmt.Errorf("sim mcp9808: register %#x: %w", m.ptr, errNoRegister)
		}
	}
	switch {
	case len(w) == 2 && m.ptr == mcpRes:
		m.regs[mcpRes] = uint16(w[1] & 3)
		m.convertLocked()
	case len(w) == 3 && m.ptr >= mcpConfig && m.ptr <= mcpCrit:
		v := uint16(w[1])<<8 | uint16(w[2])
		if m.ptr == mcpConfig {
			m.regs[mcpConfig] = v & 0x07ff
			m.convertLocked()
		} else {
			m.regs[m.ptr] = v & 0x1ffc
		}
	case len(w) > 1:
		return fmt.Errorf("sim mcp9808: write % x: %w", w, errNoRegister)
	}
	if len(r) == 0 {
		return nil
	}
	var v uint16
	switch m.ptr {
	case mcpTa:
		v = m.taLocked()
	case mcpDevID:
		v = m.device
	case mcpRes:
		r[0] = byte(m.regs[mcpRes])
		clear(r[1:])
		return nil
	default:
		v = m.regs[m.ptr]
	}
	r[0] = byte(v >> 8)
	if len(r) > 1 {
		r[1] = byte(v)
		clear(r[2:])
	}
	return nil
}

// errNoRegister: a transaction to a register the chip does not have (a
// driver bug, not a wiring fault).
var errNoRegister = errors.New("register the chip does not have")
