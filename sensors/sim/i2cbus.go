package sim

import (
	"fmt"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Device is one emulated I²C chip: Tx is one transaction addressed to it,
// the write w then, after a repeated start, the read r.
type Device interface {
	Tx(w, r []byte) error
}

// I2CBus is an i2c.BusCloser with emulated chips at their addresses. A
// transaction to an address where no chip is attached fails with ErrNACK,
// as Linux fails it with ENXIO or EREMOTEIO. It is safe for concurrent use.
type I2CBus struct {
	name string

	mu    sync.Mutex
	chips map[uint16]Device
	err   error
	txs   int
}

var _ i2c.BusCloser = (*I2CBus)(nil)

// NewI2CBus returns an empty bus; name appears in its String.
func NewI2CBus(name string) *I2CBus {
	return &I2CBus{name: name, chips: map[uint16]Device{}}
}

// Attach puts d at addr (replacing what was there).
func (b *I2CBus) Attach(addr uint16, d Device) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chips[addr] = d
}

// Detach removes the chip at addr: it stops answering (a loose wire).
func (b *I2CBus) Detach(addr uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.chips, addr)
}

// SetErr makes every transaction fail with err until SetErr(nil).
func (b *I2CBus) SetErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

// Transactions returns how many transactions reached a chip.
func (b *I2CBus) Transactions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.txs
}

// Tx implements i2c.Bus.
func (b *I2CBus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return err
	}
	d, ok := b.chips[addr]
	if ok {
		b.txs++
	}
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("tx to %#x: %w", addr, ErrNACK)
	}
	return d.Tx(w, r)
}

// String implements i2c.Bus.
func (b *I2CBus) String() string { return "sim-i2c(" + b.name + ")" }

// SetSpeed implements i2c.Bus; the speed is ignored.
func (b *I2CBus) SetSpeed(physic.Frequency) error { return nil }

// Close implements i2c.BusCloser; it does nothing.
func (b *I2CBus) Close() error { return nil }

// checkRange returns an error wrapping ErrOutOfRange for a value that is
// not finite or outside lo..hi.
func checkRange(chip, what string, v, lo, hi float64) error {
	if v != v || v < lo || v > hi {
		return fmt.Errorf("sim %s: set %s to %v (want %v..%v): %w", chip, what, v, lo, hi, ErrOutOfRange)
	}
	return nil
}
