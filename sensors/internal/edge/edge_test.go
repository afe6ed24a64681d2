package edge_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/edge"
	"github.com/iotagent/iotagent/sensors/sim"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	debounce = 50 * time.Millisecond
	poll     = time.Second
)

// rig runs Watch on a sim pin with a fake clock shared by pin and input.
// After every step the watcher is blocked in WaitForEdge (the clock has
// exactly one waiter), so the test never sleeps and never races it.
type rig struct {
	t      *testing.T
	fc     *clockwork.FakeClock
	pin    *sim.Pin
	in     *edge.Input
	events chan sensors.Event
	cancel context.CancelFunc
	done   chan error
}

func newRig(t *testing.T, initial bool, activeLow bool) *rig {
	t.Helper()
	fc := clockwork.NewFakeClockAt(t0)
	pin := sim.NewInputPin("GPIO4")
	pin.Clock = fc
	pin.Set(initial)
	in, err := edge.New(edge.Config{Name: "pir", Pin: pin, Pull: gpio.PullDown, ActiveLow: activeLow,
		Debounce: debounce, Poll: poll, Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, fc: fc, pin: pin, in: in, events: make(chan sensors.Event, 64)}
}

func (r *rig) start() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(r.t.Context())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.in.Watch(ctx, r.events) }()
	r.t.Cleanup(func() {
		cancel()
		r.fc.Advance(poll)
		<-r.done
	})
	r.idle()
}

// idle waits until the watcher is blocked in WaitForEdge.
func (r *rig) idle() {
	r.t.Helper()
	if err := r.fc.BlockUntilContext(r.t.Context(), 1); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) set(level bool) {
	r.t.Helper()
	r.pin.Set(level)
	if err := r.pin.WaitEdgesConsumed(r.t.Context()); err != nil {
		r.t.Fatal(err)
	}
	r.idle()
}

func (r *rig) advance(d time.Duration) {
	r.fc.Advance(d)
	r.idle()
}

func (r *rig) drain() []sensors.Event {
	var got []sensors.Event
	for {
		select {
		case ev := <-r.events:
			got = append(got, ev)
		default:
			return got
		}
	}
}

type step struct {
	set     *bool
	advance time.Duration
}

func set(v bool) step           { return step{set: &v} }
func wait(d time.Duration) step { return step{advance: d} }
func ev(active bool, at time.Duration) sensors.Event {
	return sensors.Event{Sensor: "pir", Active: active, Time: t0.Add(at)}
}

func TestWatchDebounce(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		initial   bool
		activeLow bool
		steps     []step
		want      []sensors.Event
	}{
		{name: "one rising edge", steps: []step{set(true), wait(50 * ms)}, want: []sensors.Event{ev(true, 0)}},
		{name: "not settled yet", steps: []step{set(true), wait(49 * ms)}},
		{name: "rise and fall", steps: []step{set(true), wait(50 * ms), set(false), wait(60 * ms)},
			want: []sensors.Event{ev(true, 0), ev(false, 50*ms)}},
		{name: "burst gives one event at its last edge",
			steps: []step{set(true), wait(10 * ms), set(false), wait(10 * ms), set(true), wait(49 * ms), set(false), wait(10 * ms), set(true), wait(50 * ms)},
			want:  []sensors.Event{ev(true, 79*ms)}},
		{name: "glitch shorter than debounce", steps: []step{set(true), wait(20 * ms), set(false), wait(200 * ms)}},
		{name: "glitch then a real change", steps: []step{set(true), wait(49 * ms), set(false), wait(51 * ms), set(true), wait(50 * ms)},
			want: []sensors.Event{ev(true, 100*ms)}},
		{name: "after idle poll timeouts", steps: []step{wait(poll), wait(poll), wait(3 * poll), set(true), wait(50 * ms)},
			want: []sensors.Event{ev(true, 5*poll)}},
		{name: "active low", initial: true, activeLow: true, steps: []step{set(false), wait(50 * ms), set(true), wait(50 * ms)},
			want: []sensors.Event{ev(true, 0), ev(false, 50*ms)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.initial, tt.activeLow)
			r.start()
			for _, s := range tt.steps {
				if s.set != nil {
					r.set(*s.set)
				} else {
					r.advance(s.advance)
				}
			}
			if diff := cmp.Diff(tt.want, r.drain()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestActive(t *testing.T) {
	r := newRig(t, false, false)
	if got, err := r.in.Active(); err != nil || got {
		t.Fatalf("Active() before Watch = %v, %v; want false", got, err)
	}
	r.pin.Set(true) // not watched: Active reads the pin
	if got, _ := r.in.Active(); !got {
		t.Fatal("Active() before Watch = false after the pin went high")
	}
	r.start()
	if got := r.drain(); len(got) != 0 { // Active already reported the level
		t.Fatalf("events at start = %v, want none", got)
	}
	r.set(false)
	if got, _ := r.in.Active(); !got {
		t.Error("Active() = false before the debounce time passed")
	}
	r.advance(debounce)
	if got, _ := r.in.Active(); got {
		t.Error("Active() = true after the debounced fall")
	}
}

func TestWatchReportsChangeSinceNew(t *testing.T) {
	r := newRig(t, false, false)
	r.pin.Set(true) // while nobody watches
	r.start()
	if diff := cmp.Diff([]sensors.Event{ev(true, 0)}, r.drain()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestWatchCancel(t *testing.T) {
	r := newRig(t, false, false)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.in.Watch(ctx, r.events) }()
	r.idle()
	cancel()
	r.fc.Advance(poll) // noticed within one poll interval
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v, want context.Canceled", err)
	}
	// Cancel during the debounce wait.
	ctx, cancel = context.WithCancel(t.Context())
	go func() { done <- r.in.Watch(ctx, r.events) }()
	r.idle()
	r.set(true)
	cancel()
	r.fc.Advance(debounce)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v, want context.Canceled", err)
	}
}

func TestWatchCancelRealClock(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO4", EdgesChan: make(chan gpio.Level, 16)}
	in, err := edge.New(edge.Config{Name: "pir", Pin: pin, Pull: gpio.PullDown, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Watch(ctx, make(chan sensors.Event)) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

func TestWatchTwice(t *testing.T) {
	r := newRig(t, false, false)
	r.start()
	if err := r.in.Watch(t.Context(), r.events); !errors.Is(err, sensors.ErrWatching) {
		t.Errorf("second Watch = %v, want ErrWatching", err)
	}
}

// gpiotest.Pin directly: edges queued before Watch starts are all seen at
// once, so the outcome does not depend on timing.
func TestGpiotestPinBurst(t *testing.T) {
	tests := []struct {
		name  string
		edges []gpio.Level
		then  []gpio.Level // pushed after the first event
		want  []bool
	}{
		{name: "burst", edges: []gpio.Level{gpio.High, gpio.Low, gpio.High}, want: []bool{true}},
		{name: "glitch then change", edges: []gpio.Level{gpio.High, gpio.Low, gpio.High, gpio.Low, gpio.High}, want: []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin := &gpiotest.Pin{N: "GPIO4", EdgesChan: make(chan gpio.Level, 16)}
			in, err := edge.New(edge.Config{Name: "pir", Pin: pin, Pull: gpio.PullDown, Debounce: 20 * time.Millisecond, Poll: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range tt.edges {
				pin.EdgesChan <- l
			}
			events := make(chan sensors.Event, 16)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- in.Watch(ctx, events) }()
			var got []bool
			select {
			case e := <-events:
				got = append(got, e.Active)
			case <-time.After(10 * time.Second):
				t.Fatal("no event")
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Watch = %v", err)
			}
			close(events)
			for e := range events {
				got = append(got, e.Active)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// A level change without an edge (a missed interrupt) is still reported.
func TestMissedEdge(t *testing.T) {
	fc := clockwork.NewFakeClockAt(t0)
	pin := &gpiotest.Pin{N: "GPIO4", Clock: fc, EdgesChan: make(chan gpio.Level, 1)}
	in, err := edge.New(edge.Config{Name: "pir", Pin: pin, Pull: gpio.PullDown, Debounce: debounce, Poll: poll, Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan sensors.Event, 4)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = in.Watch(ctx, events) }()
	if err := fc.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	pin.Lock()
	pin.L = gpio.High
	pin.Unlock()
	fc.Advance(poll) // the poll times out and the level differs
	if err := fc.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	fc.Advance(debounce)
	if diff := cmp.Diff(sensors.Event{Sensor: "pir", Active: true, Time: t0.Add(poll)}, <-events); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
}

// failPin fails In, or returns from WaitForEdge at once.
type failPin struct {
	gpiotest.Pin
	inErr error
}

func (p *failPin) In(pull gpio.Pull, e gpio.Edge) error {
	if p.inErr != nil {
		return p.inErr
	}
	return p.Pin.In(pull, e)
}

func (p *failPin) WaitForEdge(time.Duration) bool { return false }

func TestWatchPinDoesNotWait(t *testing.T) {
	pin := &failPin{Pin: gpiotest.Pin{N: "GPIO4", EdgesChan: make(chan gpio.Level)}}
	in, err := edge.New(edge.Config{Name: "pir", Pin: pin, Clock: clockwork.NewFakeClockAt(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Watch(t.Context(), make(chan sensors.Event)); !errors.Is(err, sensors.ErrNoEdgeWait) {
		t.Errorf("Watch = %v, want ErrNoEdgeWait", err)
	}
}

func TestNewErrors(t *testing.T) {
	errIn := errors.New("gpio: line busy")
	tests := []struct {
		name   string
		cfg    edge.Config
		wantIs error
	}{
		{name: "In fails", cfg: edge.Config{Name: "pir", Pin: &failPin{inErr: errIn}}, wantIs: errIn},
		{name: "gpiotest without EdgesChan", cfg: edge.Config{Name: "pir", Pin: &gpiotest.Pin{N: "GPIO4"}}},
		{name: "nil pin", cfg: edge.Config{Name: "pir"}},
		{name: "empty name", cfg: edge.Config{Pin: sim.NewInputPin("GPIO4")}},
		{name: "negative debounce", cfg: edge.Config{Name: "pir", Pin: sim.NewInputPin("GPIO4"), Debounce: -1}},
		{name: "negative poll", cfg: edge.Config{Name: "pir", Pin: sim.NewInputPin("GPIO4"), Poll: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := edge.New(tt.cfg)
			if err == nil || in != nil {
				t.Fatalf("New = %v, %v; want an error", in, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("New = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
	if err := newOK(t).Watch(t.Context(), nil); err == nil {
		t.Error("Watch with a nil channel succeeded")
	}
}

func newOK(t *testing.T) *edge.Input {
	in, err := edge.New(edge.Config{Name: "pir", Pin: sim.NewInputPin("GPIO4")})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// With a pin that supports Halt, Watch returns as soon as ctx ends,
// without waiting for its poll interval: the fake clock is never advanced.
func TestWatchCancelHalts(t *testing.T) {
	r := newRig(t, false, false)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.in.Watch(ctx, r.events) }()
	r.idle() // blocked in WaitForEdge
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v, want context.Canceled", err)
	}
}
