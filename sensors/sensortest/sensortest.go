// Package sensortest provides small in-memory fakes of sensors.Sensor,
// sensors.Input and sensors.Output for other packages' tests. They need no
// pins, buses or clocks; every method is safe for concurrent use.
package sensortest

import (
	"context"
	"sync"
	"time"

	"github.com/iotagent/iotagent/sensors"
)

// FakeSensor is a sensors.Sensor returning a reading set by the test.
type FakeSensor struct {
	name string

	mu      sync.Mutex
	r       sensors.Reading
	err     error
	reads   int
	hold    chan struct{} // non-nil: Read waits for it to close
	waiting chan struct{} // told of every Read that starts waiting on hold
}

var _ sensors.Sensor = (*FakeSensor)(nil)

// NewFakeSensor returns a sensor whose Read returns a zero reading (named
// name) until Set.
func NewFakeSensor(name string) *FakeSensor { return &FakeSensor{name: name} }

// Name implements sensors.Sensor.
func (s *FakeSensor) Name() string { return s.name }

// Set makes Read return r (with Sensor set to the fake's name if empty).
func (s *FakeSensor) Set(r sensors.Reading) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.r = r
}

// SetErr makes Read fail with err until SetErr(nil).
func (s *FakeSensor) SetErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Reads returns how many times Read was called.
func (s *FakeSensor) Reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// Block makes every Read from now on wait, like a slow bus or a
// forced-mode measurement, until release is called or the Read's ctx ends.
// Each Read that starts waiting sends on started (buffered; a test that
// does not receive from it does not block Read). release may be called
// more than once.
func (s *FakeSensor) Block() (started <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hold, waiting := make(chan struct{}), make(chan struct{}, 64)
	s.hold, s.waiting = hold, waiting
	var once sync.Once
	return waiting, func() {
		once.Do(func() {
			s.mu.Lock()
			if s.hold == hold {
				s.hold, s.waiting = nil, nil
			}
			s.mu.Unlock()
			close(hold)
		})
	}
}

// Read implements sensors.Sensor. It returns ctx.Err() if ctx has ended,
// and waits first while the sensor is blocked (see Block).
func (s *FakeSensor) Read(ctx context.Context) (sensors.Reading, error) {
	s.mu.Lock()
	s.reads++
	hold, waiting := s.hold, s.waiting
	s.mu.Unlock()
	if hold != nil {
		select {
		case waiting <- struct{}{}:
		default:
		}
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return sensors.Reading{}, err
	}
	if s.err != nil {
		return sensors.Reading{}, s.err
	}
	r := s.r
	if r.Sensor == "" {
		r.Sensor = s.name
	}
	return r, nil
}

// FakeInput is a sensors.Input driven by Trigger. Events triggered while no
// Watch runs are queued and delivered, in order, by the next Watch, so a
// test need not wait for Watch to start before triggering.
type FakeInput struct {
	name string
	now  func() time.Time

	mu       sync.Mutex
	active   bool
	queue    []sensors.Event
	err      error
	wake     chan struct{} // signalled (non-blocking) on Trigger/SetErr
	watching bool
}

var _ sensors.Input = (*FakeInput)(nil)

// NewFakeInput returns an inactive input. Events are stamped with
// time.Now; see SetNow.
func NewFakeInput(name string) *FakeInput {
	return &FakeInput{name: name, now: time.Now, wake: make(chan struct{}, 1)}
}

// SetNow replaces the clock used to stamp events.
func (in *FakeInput) SetNow(now func() time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.now = now
}

// Name implements sensors.Input.
func (in *FakeInput) Name() string { return in.name }

// Trigger sets the level and, if it changed, queues an Event for Watch.
func (in *FakeInput) Trigger(active bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.active == active {
		return
	}
	in.active = active
	in.queue = append(in.queue, sensors.Event{Sensor: in.name, Active: active, Time: in.now()})
	in.signal()
}

// SetErr makes Active fail and a running (or the next) Watch return err.
func (in *FakeInput) SetErr(err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.err = err
	in.signal()
}

func (in *FakeInput) signal() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// Active implements sensors.Input.
func (in *FakeInput) Active() (bool, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.err != nil {
		return false, in.err
	}
	return in.active, nil
}

// Watch implements sensors.Input: it delivers queued events until ctx ends
// or SetErr is called. A second concurrent Watch returns
// sensors.ErrWatching.
func (in *FakeInput) Watch(ctx context.Context, events chan<- sensors.Event) error {
	in.mu.Lock()
	if in.watching {
		in.mu.Unlock()
		return sensors.ErrWatching
	}
	in.watching = true
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		in.watching = false
		in.mu.Unlock()
	}()
	for {
		in.mu.Lock()
		err := in.err
		var ev sensors.Event
		pending := len(in.queue) > 0
		if pending {
			ev = in.queue[0]
		}
		in.mu.Unlock()
		if err != nil {
			return err
		}
		if !pending {
			select {
			case <-in.wake:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case events <- ev:
			in.mu.Lock()
			in.queue = in.queue[1:]
			in.mu.Unlock()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// FakeOutput is a sensors.Output recording every Set call.
type FakeOutput struct {
	name string

	mu    sync.Mutex
	on    bool
	calls []bool
	err   error
}

var _ sensors.Output = (*FakeOutput)(nil)

// NewFakeOutput returns an output that is off.
func NewFakeOutput(name string) *FakeOutput { return &FakeOutput{name: name} }

// Name implements sensors.Output.
func (o *FakeOutput) Name() string { return o.name }

// Set implements sensors.Output. Every call is recorded, even failing ones;
// a failing call leaves the state unchanged.
func (o *FakeOutput) Set(on bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, on)
	if o.err != nil {
		return o.err
	}
	o.on = on
	return nil
}

// SetErr makes Set fail with err until SetErr(nil).
func (o *FakeOutput) SetErr(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.err = err
}

// On implements sensors.Output.
func (o *FakeOutput) On() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.on
}

// Calls returns the arguments of every Set call, oldest first.
func (o *FakeOutput) Calls() []bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]bool(nil), o.calls...)
}
