// Package output drives a digital output (an LED, a buzzer) on a GPIO pin.
package output

import (
	"errors"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/gpio"

	"github.com/iotagent/iotagent/sensors"
)

// Output is a GPIO output. It is safe for concurrent use.
type Output struct {
	name      string
	pin       gpio.PinOut
	activeLow bool

	mu sync.Mutex
	on bool
}

var _ sensors.Output = (*Output)(nil)

// New drives pin to the "off" level (High when activeLow, else Low) and
// returns the output.
func New(name string, pin gpio.PinOut, activeLow bool) (*Output, error) {
	if name == "" {
		return nil, errors.New("new output: empty name")
	}
	if pin == nil {
		return nil, fmt.Errorf("new output %s: nil pin", name)
	}
	o := &Output{name: name, pin: pin, activeLow: activeLow}
	if err := pin.Out(o.level(false)); err != nil {
		return nil, fmt.Errorf("configure output %s on %s: %w", name, pin, err)
	}
	return o, nil
}

// Name returns the output's name.
func (o *Output) Name() string { return o.name }

// Set switches the output on or off. On failure the recorded state is
// unchanged.
func (o *Output) Set(on bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.pin.Out(o.level(on)); err != nil {
		return fmt.Errorf("set output %s to %t: %w", o.name, on, err)
	}
	o.on = on
	return nil
}

// On reports the last state successfully set (false after New).
func (o *Output) On() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.on
}

func (o *Output) level(on bool) gpio.Level { return gpio.Level(on != o.activeLow) }
