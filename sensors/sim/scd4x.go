package sim

import (
	"fmt"
	"math"
	"sync"
)

// SCD4x is an emulated Sensirion SCD40/SCD41 CO₂ sensor, a Device for an
// I2CBus. It speaks the chip's command protocol: 16-bit commands, words
// followed by a CRC-8 (polynomial 0x31, init 0xFF). It models the idle and
// periodic-measurement states: wake_up (0x36F6) is not acknowledged, as on
// the chip; start_periodic_measurement (0x21B1) only in idle;
// stop_periodic_measurement (0x3F86) always; get_data_ready_status (0xE4B8)
// and read_measurement (0xEC05: CO₂ ppm, temperature and humidity words).
// Any other command during periodic measurement, and read_measurement in
// idle, are not acknowledged. The sim measures at once: in periodic
// measurement a reading is always ready (the chip takes 5 s).
type SCD4x struct {
	mu       sync.Mutex
	co2      float64
	tempC    float64
	rh       float64
	periodic bool
	resp     []byte
	corrupt  bool
	serial   [3]uint16
}

// NewSCD4x returns an idle chip measuring the given values.
func NewSCD4x(co2ppm, tempC, rh float64) (*SCD4x, error) {
	s := &SCD4x{serial: [3]uint16{0xf896, 0x9f07, 0x3bb3}}
	for _, x := range []struct {
		n string
		v float64
	}{{"co2_ppm", co2ppm}, {"temperature_c", tempC}, {"humidity_pct", rh}} {
		if err := s.Set(x.n, x.v); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Set changes what the next measurement reads: "co2_ppm" (0..40000),
// "temperature_c" (-10..60, the operating range) or "humidity_pct"
// (0..100).
func (s *SCD4x) Set(name string, v float64) error {
	var dst *float64
	var lo, hi float64
	s.mu.Lock()
	defer s.mu.Unlock()
	switch name {
	case "co2_ppm":
		dst, lo, hi = &s.co2, 0, 40000
	case "temperature_c":
		dst, lo, hi = &s.tempC, -10, 60
	case "humidity_pct":
		dst, lo, hi = &s.rh, 0, 100
	default:
		return fmt.Errorf("sim scd4x: no reading %q (it has co2_ppm, temperature_c, humidity_pct)", name)
	}
	if err := checkRange("scd4x", name, v, lo, hi); err != nil {
		return err
	}
	*dst = v
	return nil
}

// Corrupt makes the next response's first CRC wrong (a glitch on the bus).
func (s *SCD4x) Corrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt = true
}

// Periodic reports whether the chip is in periodic measurement.
func (s *SCD4x) Periodic() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.periodic
}

// Close implements sensors.SimControl; it does nothing.
func (s *SCD4x) Close() error { return nil }

// SensirionCRC is the CRC-8 of a Sensirion word (polynomial 0x31, init
// 0xFF).
func SensirionCRC(b []byte) byte {
	crc := byte(0xff)
	for _, x := range b {
		crc ^= x
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x31
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// SCD4xWords encodes the measurement as read_measurement's words.
func SCD4xWords(co2ppm, tempC, rh float64) [3]uint16 {
	return [3]uint16{
		uint16(math.Round(co2ppm)),
		uint16(math.Round((tempC + 45) * 65535 / 175)),
		uint16(math.Round(rh * 65535 / 100)),
	}
}

func (s *SCD4x) respondLocked(words ...uint16) {
	s.resp = s.resp[:0]
	for _, w := range words {
		b := []byte{byte(w >> 8), byte(w)}
		s.resp = append(s.resp, b[0], b[1], SensirionCRC(b))
	}
	if s.corrupt && len(s.resp) > 0 {
		s.resp[2] ^= 0xff
		s.corrupt = false
	}
}

var errSCDNACK = fmt.Errorf("sim scd4x: command not acknowledged: %w", ErrNACK)

// Tx implements Device. A write is a command (and its arguments); the
// read that follows returns the command's response.
func (s *SCD4x) Tx(w, r []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(w) >= 2 {
		cmd := uint16(w[0])<<8 | uint16(w[1])
		s.resp = s.resp[:0]
		switch {
		case cmd == 0x36f6: // wake_up: the chip does not acknowledge it
			return errSCDNACK
		case cmd == 0x3f86:
			s.periodic = false
		case cmd == 0xe4b8:
			if s.periodic {
				s.respondLocked(0x8006) // lower 11 bits non-zero: ready
			} else {
				s.respondLocked(0x8000)
			}
		case cmd == 0xec05:
			if !s.periodic {
				return errSCDNACK
			}
			wd := SCD4xWords(s.co2, s.tempC, s.rh)
			s.respondLocked(wd[:]...)
		case s.periodic:
			return errSCDNACK
		case cmd == 0x21b1:
			s.periodic = true
		case cmd == 0x3682:
			s.respondLocked(s.serial[:]...)
		default:
			return fmt.Errorf("sim scd4x: command %#04x: %w", cmd, errNoRegister)
		}
	} else if len(w) == 1 {
		return fmt.Errorf("sim scd4x: a command has 2 bytes, got % x: %w", w, errNoRegister)
	}
	if len(r) > 0 {
		if len(r) > len(s.resp) {
			return fmt.Errorf("sim scd4x: read %d bytes, the response has %d: %w", len(r), len(s.resp), ErrNACK)
		}
		copy(r, s.resp)
	}
	return nil
}
