package contact_test

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
	"github.com/iotagent/iotagent/sensors/contact"
	"github.com/iotagent/iotagent/sensors/sim"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func TestPolarity(t *testing.T) {
	tests := []struct {
		name     string
		opts     contact.Opts
		level    bool
		wantPull gpio.Pull
		wantOpen bool
	}{
		{name: "default: high is open", level: true, wantPull: gpio.PullUp, wantOpen: true},
		{name: "default: low is shut", level: false, wantPull: gpio.PullUp, wantOpen: false},
		{name: "active low: low is open", opts: contact.Opts{ActiveLow: true}, level: false, wantPull: gpio.PullDown, wantOpen: true},
		{name: "active low: high is shut", opts: contact.Opts{ActiveLow: true}, level: true, wantPull: gpio.PullDown, wantOpen: false},
		{name: "explicit pull", opts: contact.Opts{Pull: gpio.Float}, level: true, wantPull: gpio.Float, wantOpen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin := sim.NewInputPin("GPIO17")
			pin.Set(tt.level)
			in, err := contact.New("lid", pin, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := pin.Pull(); got != tt.wantPull {
				t.Errorf("pull = %v, want %v", got, tt.wantPull)
			}
			if got, err := in.Active(); err != nil || got != tt.wantOpen {
				t.Errorf("Active() = %v, %v; want %v", got, err, tt.wantOpen)
			}
		})
	}
}

// The lid is opened with contact bounce, then shut: one Event each way.
func TestLidOpenCloseWithBounce(t *testing.T) {
	fc := clockwork.NewFakeClockAt(t0)
	pin := sim.NewInputPin("GPIO17")
	pin.Clock = fc
	in, err := contact.New("lid", pin, contact.Opts{Clock: fc, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan sensors.Event, 8)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Watch(ctx, events) }()
	idle := func() {
		t.Helper()
		if err := fc.BlockUntilContext(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
	}
	set := func(level bool) {
		t.Helper()
		pin.Set(level)
		if err := pin.WaitEdgesConsumed(t.Context()); err != nil {
			t.Fatal(err)
		}
		idle()
	}
	idle()
	for _, l := range []bool{true, false, true, false, true} { // bounce, 1 ms apart
		set(l)
		fc.Advance(time.Millisecond)
		idle()
	}
	fc.Advance(20 * time.Millisecond)
	open := <-events
	idle()
	set(false)
	fc.Advance(20 * time.Millisecond)
	shut := <-events
	want := []sensors.Event{
		{Sensor: "lid", Active: true, Time: t0.Add(4 * time.Millisecond)},
		{Sensor: "lid", Active: false, Time: t0.Add(25 * time.Millisecond)},
	}
	if diff := cmp.Diff(want, []sensors.Event{open, shut}); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	idle()
	if n := len(events); n != 0 {
		t.Errorf("%d extra events", n)
	}
	cancel()
	fc.Advance(time.Second)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v, want context.Canceled", err)
	}
}

func TestWatchGpiotestPin(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO17", Num: 17, EdgesChan: make(chan gpio.Level, 16)}
	in, err := contact.New("lid", pin, contact.Opts{Debounce: 10 * time.Millisecond, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// gpiotest's In(PullUp) sets the level High: the lid reads open.
	if got, _ := in.Active(); !got {
		t.Fatal("Active() = false with the pull-up and no magnet")
	}
	for _, l := range []gpio.Level{gpio.Low, gpio.High, gpio.Low} { // shut, with bounce
		pin.EdgesChan <- l
	}
	events := make(chan sensors.Event, 8)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Watch(ctx, events) }()
	select {
	case e := <-events:
		if e.Active {
			t.Errorf("event = %+v, want lid shut", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v, want context.Canceled", err)
	}
	if n := len(events); n != 0 {
		t.Errorf("%d extra events", n)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := contact.New("", sim.NewInputPin("GPIO17"), contact.Opts{}); err == nil {
		t.Error("New with an empty name succeeded")
	}
	if _, err := contact.New("lid", &gpiotest.Pin{N: "GPIO17"}, contact.Opts{}); err == nil {
		t.Error("New on a gpiotest.Pin without EdgesChan succeeded")
	}
}
