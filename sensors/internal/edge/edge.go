// Package edge is the debounced, edge-driven digital input shared by the
// motion and contact drivers.
//
// An [Input] configures its pin for both edges, then Watch loops on
// WaitForEdge with a positive timeout (gpioioctl treats -1 as "return at
// once" and gpiotest treats 0 the same way, so neither is safe in a loop),
// notices ctx cancellation within one poll interval, and reports a change
// only once the level has been quiet for the debounce time and differs from
// the last reported level: a burst of edges gives one Event and a glitch
// shorter than the debounce time gives none.
package edge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"

	"github.com/iotagent/iotagent/sensors"
)

// Defaults applied by [New] to zero fields of [Config]. Every poll wakes
// the process: at 200 ms, two idle inputs were 96 % of the idle agent's
// CPU (BENCHMARKS.md); at 1 s a stop waits at most that long for Watch.
const (
	DefaultDebounce = 50 * time.Millisecond
	DefaultPoll     = time.Second
)

// fastReturns is how many consecutive WaitForEdge calls may return false
// in under half their timeout before Watch gives up with ErrNoEdgeWait.
const fastReturns = 16

// Config describes one input.
type Config struct {
	Name string
	Pin  gpio.PinIn
	// Pull is passed to Pin.In. The caller resolves its own default.
	Pull gpio.Pull
	// ActiveLow inverts the pin: Low means active.
	ActiveLow bool
	// Debounce is how long the level must stay quiet before a change is
	// reported. Zero means DefaultDebounce; negative is an error.
	Debounce time.Duration
	// Poll bounds each WaitForEdge call, and so how long Watch takes to
	// notice that ctx ended. Zero means DefaultPoll; negative is an error.
	Poll time.Duration
	// Clock measures the debounce interval and stamps events. Nil means the
	// real clock. Pins with their own timers (gpiotest.Pin.Clock, sim.Pin)
	// should share it in tests.
	Clock clockwork.Clock
}

// Input is a debounced digital input. It is safe for concurrent use; only
// one Watch may run at a time.
type Input struct {
	name      string
	pin       gpio.PinIn
	activeLow bool
	debounce  time.Duration
	poll      time.Duration
	clock     clockwork.Clock

	mu       sync.Mutex
	stable   gpio.Level // last reported level
	watching bool
}

// New validates c, configures the pin as an input with pull c.Pull and
// edge detection on both edges, and records the current level as the
// starting state. It starts no goroutine.
func New(c Config) (*Input, error) {
	if c.Name == "" {
		return nil, errors.New("new input: empty name")
	}
	if c.Pin == nil {
		return nil, fmt.Errorf("new input %s: nil pin", c.Name)
	}
	if c.Debounce < 0 {
		return nil, fmt.Errorf("new input %s: negative debounce %v", c.Name, c.Debounce)
	}
	if c.Poll < 0 {
		return nil, fmt.Errorf("new input %s: negative poll interval %v", c.Name, c.Poll)
	}
	in := &Input{
		name:      c.Name,
		pin:       c.Pin,
		activeLow: c.ActiveLow,
		debounce:  c.Debounce,
		poll:      c.Poll,
		clock:     c.Clock,
	}
	if in.debounce == 0 {
		in.debounce = DefaultDebounce
	}
	if in.poll == 0 {
		in.poll = DefaultPoll
	}
	if in.clock == nil {
		in.clock = clockwork.NewRealClock()
	}
	if err := c.Pin.In(c.Pull, gpio.BothEdges); err != nil {
		return nil, fmt.Errorf("configure input %s on %s: %w", c.Name, c.Pin, err)
	}
	in.stable = c.Pin.Read()
	return in, nil
}

// Name returns the input's name.
func (in *Input) Name() string { return in.name }

// Active reports the debounced level. While Watch runs this is the level of
// the last Event; otherwise the pin is read directly (nothing debounces it)
// and that level becomes the reference for the next Watch.
func (in *Input) Active() (bool, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.watching {
		in.stable = in.pin.Read()
	}
	return in.active(in.stable), nil
}

func (in *Input) active(l gpio.Level) bool { return bool(l) != in.activeLow }

// Watch blocks until ctx ends, sending an Event on every debounced change.
// If the level changed since New or the last Active call, the first Event
// reports it at once. Watch returns ctx.Err(), ErrWatching when another
// Watch is running, or ErrNoEdgeWait when the pin does not wait.
func (in *Input) Watch(ctx context.Context, events chan<- sensors.Event) error {
	if events == nil {
		return fmt.Errorf("watch %s: nil events channel", in.name)
	}
	in.mu.Lock()
	if in.watching {
		in.mu.Unlock()
		return fmt.Errorf("watch %s: %w", in.name, sensors.ErrWatching)
	}
	in.watching = true
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		in.watching = false
		in.mu.Unlock()
	}()

	// When ctx ends, Halt wakes the WaitForEdge in progress on drivers
	// that support it (gpioioctl, bcm283x, the sim pin), so the agent stops
	// at once; on others Watch notices within the poll interval.
	defer context.AfterFunc(ctx, func() { _ = in.pin.Halt() })()
	if err := in.report(ctx, in.pin.Read(), in.clock.Now(), events); err != nil {
		return err
	}
	fast := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := in.clock.Now()
		if !in.pin.WaitForEdge(in.poll) {
			if in.clock.Since(start) < in.poll/2 {
				if fast++; fast >= fastReturns {
					return fmt.Errorf("watch %s on %s: %w", in.name, in.pin, sensors.ErrNoEdgeWait)
				}
			} else {
				fast = 0
			}
			// A missed edge still shows as a level change: debounce it
			// like an edge.
			if in.level() == in.pin.Read() {
				continue
			}
		} else {
			fast = 0
		}
		last, err := in.settle(ctx)
		if err != nil {
			return err
		}
		if err := in.report(ctx, in.pin.Read(), last, events); err != nil {
			return err
		}
	}
}

// settle waits until no edge has been seen for the debounce time and
// returns the time of the last edge.
func (in *Input) settle(ctx context.Context) (time.Time, error) {
	last := in.clock.Now()
	for {
		if err := ctx.Err(); err != nil {
			return last, err
		}
		rem := in.debounce - in.clock.Since(last)
		if rem <= 0 {
			return last, nil
		}
		if in.pin.WaitForEdge(min(rem, in.poll)) {
			last = in.clock.Now()
		}
	}
}

func (in *Input) level() gpio.Level {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stable
}

// report records l and sends an Event if it differs from the last level.
func (in *Input) report(ctx context.Context, l gpio.Level, at time.Time, events chan<- sensors.Event) error {
	in.mu.Lock()
	changed := l != in.stable
	in.stable = l
	in.mu.Unlock()
	if !changed {
		return nil
	}
	select {
	case events <- sensors.Event{Sensor: in.name, Active: in.active(l), Time: at}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
