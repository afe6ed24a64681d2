// Package contact drives a reed switch used as a lid contact. Active means
// the lid is open (the alarm condition).
//
// Reference wiring: a normally-open reed switch between the GPIO and ground,
// held closed by the magnet while the lid is shut. With the default pull-up
// the pin reads low when the lid is shut and high when it is open, so the
// input is active high by default. A normally-closed switch (or a switch to
// 3V3 with a pull-down) is handled with ActiveLow and Pull.
//
// Edges are debounced (50 ms by default), which absorbs contact bounce.
package contact

import (
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/edge"
)

// Opts configures a contact input. The zero value is the reference wiring.
type Opts struct {
	// ActiveLow means the pin reads low when the lid is open.
	ActiveLow bool
	// Pull is the pin's resistor; zero (gpio.PullNoChange) means
	// gpio.PullUp, or gpio.PullDown when ActiveLow is set.
	Pull gpio.Pull
	// Debounce defaults to 50 ms.
	Debounce time.Duration
	// Poll bounds how long Watch takes to notice that its ctx ended;
	// it defaults to 1 s.
	Poll time.Duration
	// Clock defaults to the real clock; tests pass a clockwork.FakeClock.
	Clock clockwork.Clock
}

// Input is a debounced lid contact. Active means the lid is open.
type Input = edge.Input

var _ sensors.Input = (*Input)(nil)

// New configures pin as an input (pull, both edges) and returns the
// contact input. It starts no goroutine; call Watch.
func New(name string, pin gpio.PinIn, o Opts) (*Input, error) {
	pull := o.Pull
	if pull == gpio.PullNoChange {
		pull = gpio.PullUp
		if o.ActiveLow {
			pull = gpio.PullDown
		}
	}
	return edge.New(edge.Config{
		Name: name, Pin: pin, Pull: pull, ActiveLow: o.ActiveLow,
		Debounce: o.Debounce, Poll: o.Poll, Clock: o.Clock,
	})
}
