// Package motion drives a PIR motion sensor (for example an HC-SR501) wired
// to a GPIO input. The sensor drives its output high while it sees motion,
// so the input is active high with a pull-down by default.
//
// Edges are debounced (50 ms by default): a burst of edges gives one Event
// and a glitch shorter than the debounce time gives none.
package motion

import (
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/edge"
)

// Opts configures a motion input. The zero value is the reference wiring.
type Opts struct {
	// ActiveLow is for sensors whose output goes low on motion.
	ActiveLow bool
	// Pull is the pin's resistor; zero (gpio.PullNoChange) means
	// gpio.PullDown, or gpio.PullUp when ActiveLow is set.
	Pull gpio.Pull
	// Debounce defaults to 50 ms.
	Debounce time.Duration
	// Poll bounds how long Watch takes to notice that its ctx ended;
	// it defaults to 1 s.
	Poll time.Duration
	// Clock defaults to the real clock; tests pass a clockwork.FakeClock.
	Clock clockwork.Clock
}

// Input is a debounced PIR motion input. Active means motion.
type Input = edge.Input

var _ sensors.Input = (*Input)(nil)

// New configures pin as an input (pull, both edges) and returns the
// motion input. It starts no goroutine; call Watch.
func New(name string, pin gpio.PinIn, o Opts) (*Input, error) {
	pull := o.Pull
	if pull == gpio.PullNoChange {
		pull = gpio.PullDown
		if o.ActiveLow {
			pull = gpio.PullUp
		}
	}
	return edge.New(edge.Config{
		Name: name, Pin: pin, Pull: pull, ActiveLow: o.ActiveLow,
		Debounce: o.Debounce, Poll: o.Poll, Clock: o.Clock,
	})
}
