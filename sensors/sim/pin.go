package sim

import (
	"context"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// edgeQueue is the capacity of a simulated input's edge channel. When it is
// full, further edges are dropped: one pending edge is enough to wake the
// reader, which then reads the current level.
const edgeQueue = 64

// Pin is a simulated input pin: a gpio.PinIO whose level the simulation sets
// with Set. It wraps a gpiotest.Pin (name, level, pull, EdgesChan) and
// changes four behaviours:
//
//   - In keeps the level: the pin models an externally driven signal, so a
//     Set before the driver's In is not lost (gpiotest.Pin would reset the
//     level from the pull and drop queued edges).
//   - Set delivers an edge only when the level changes and edge detection
//     is on, like hardware; edges are wake-ups, Read returns the level.
//   - WaitForEdge stops its timer on return, so a clockwork.FakeClock in
//     Pin.Clock sees exactly one waiter while a reader is blocked.
//   - Halt wakes a WaitForEdge in progress, as periph's gpioioctl does.
//
// Set Pin.Clock (the embedded gpiotest field) before use to share a fake
// clock with the driver.
type Pin struct {
	gpiotest.Pin

	sm      sync.Mutex
	edges   bool          // edge detection enabled by In
	pending int           // edges queued and not yet consumed
	changed chan struct{} // closed and replaced when pending drops to 0
	halt    chan struct{} // Halt wakes one WaitForEdge
}

// NewInputPin returns a simulated input pin, initially Low.
func NewInputPin(name string) *Pin {
	p := &Pin{changed: make(chan struct{}), halt: make(chan struct{}, 1)}
	p.N = name
	p.Num = -1
	p.EdgesChan = make(chan gpio.Level, edgeQueue)
	return p
}

// Set drives the pin's level, as the outside world would.
func (p *Pin) Set(level bool) {
	l := gpio.Level(level)
	p.Lock()
	old := p.L
	p.L = l
	p.Unlock()
	if old == l {
		return
	}
	p.sm.Lock()
	defer p.sm.Unlock()
	if !p.edges {
		return
	}
	select {
	case p.EdgesChan <- l:
		p.pending++
	default:
	}
}

// In implements gpio.PinIn. It records pull and edge mode, drops queued
// edges and keeps the level.
func (p *Pin) In(pull gpio.Pull, edge gpio.Edge) error {
	p.Lock()
	p.P = pull
	p.Unlock()
	p.sm.Lock()
	defer p.sm.Unlock()
	p.edges = edge != gpio.NoEdge
	for {
		select {
		case <-p.EdgesChan:
		default:
			p.consumedLocked(p.pending)
			return nil
		}
	}
}

// WaitForEdge implements gpio.PinIn: -1 waits forever, 0 only checks for a
// queued edge, a positive timeout is measured on Pin.Clock.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	// A queued edge is taken before any timer is armed: a test that waits
	// for the fake clock to have a waiter must only see one while
	// WaitForEdge is really blocked.
	select {
	case <-p.EdgesChan:
	case <-p.halt:
		return false
	default:
		if !p.waitEdge(timeout) {
			return false
		}
	}
	p.sm.Lock()
	defer p.sm.Unlock()
	p.consumedLocked(1)
	return true
}

// waitEdge blocks for the next edge, forever if timeout < 0, on Pin.Clock.
func (p *Pin) waitEdge(timeout time.Duration) bool {
	if timeout == 0 {
		return false
	}
	if timeout < 0 {
		select {
		case <-p.EdgesChan:
			return true
		case <-p.halt:
			return false
		}
	}
	c := p.Clock
	if c == nil {
		c = clockwork.NewRealClock()
	}
	t := c.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.EdgesChan:
		return true
	case <-t.Chan():
		return false
	case <-p.halt:
		return false
	}
}

// Halt implements conn.Resource: it wakes a WaitForEdge in progress (or
// the next one), which returns false, as periph's gpioioctl driver does.
func (p *Pin) Halt() error {
	select {
	case p.halt <- struct{}{}:
	default:
	}
	return nil
}

func (p *Pin) consumedLocked(n int) {
	if n <= 0 {
		return
	}
	p.pending = max(0, p.pending-n)
	if p.pending == 0 {
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// WaitEdgesConsumed blocks until every edge delivered by Set has been
// received by WaitForEdge (or dropped by In), or ctx ends. Tests use it as
// the synchronisation point before advancing a fake clock.
func (p *Pin) WaitEdgesConsumed(ctx context.Context) error {
	for {
		p.sm.Lock()
		n, ch := p.pending, p.changed
		p.sm.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// OutputPin is a simulated output pin that records what it is driven to.
type OutputPin struct {
	gpiotest.Pin

	hm      sync.Mutex
	history []bool
}

// NewOutputPin returns a simulated output pin, initially Low.
func NewOutputPin(name string) *OutputPin {
	p := &OutputPin{}
	p.N = name
	p.Num = -1
	return p
}

// Out implements gpio.PinOut and records the level.
func (p *OutputPin) Out(l gpio.Level) error {
	if err := p.Pin.Out(l); err != nil {
		return err
	}
	p.hm.Lock()
	defer p.hm.Unlock()
	p.history = append(p.history, bool(l))
	return nil
}

// On reports whether the pin is driven High.
func (p *OutputPin) On() bool { return bool(p.Read()) }

// History returns every level the pin was driven to, oldest first.
func (p *OutputPin) History() []bool {
	p.hm.Lock()
	defer p.hm.Unlock()
	return append([]bool(nil), p.history...)
}

var (
	_ gpio.PinIO = (*Pin)(nil)
	_ gpio.PinIO = (*OutputPin)(nil)
)
