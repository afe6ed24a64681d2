package motion_test

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
	"github.com/iotagent/iotagent/sensors/motion"
	"github.com/iotagent/iotagent/sensors/sim"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func TestDefaults(t *testing.T) {
	tests := []struct {
		name       string
		opts       motion.Opts
		level      bool // pin level
		wantPull   gpio.Pull
		wantActive bool
	}{
		{name: "active high, pull-down", level: true, wantPull: gpio.PullDown, wantActive: true},
		{name: "idle low", level: false, wantPull: gpio.PullDown, wantActive: false},
		{name: "active low, pull-up", opts: motion.Opts{ActiveLow: true}, level: false, wantPull: gpio.PullUp, wantActive: true},
		{name: "explicit float", opts: motion.Opts{Pull: gpio.Float}, level: true, wantPull: gpio.Float, wantActive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pin := sim.NewInputPin("GPIO4")
			pin.Set(tt.level)
			in, err := motion.New("pir", pin, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := pin.Pull(); got != tt.wantPull {
				t.Errorf("pull = %v, want %v", got, tt.wantPull)
			}
			got, err := in.Active()
			if err != nil || got != tt.wantActive {
				t.Errorf("Active() = %v, %v; want %v", got, err, tt.wantActive)
			}
			if in.Name() != "pir" {
				t.Errorf("Name() = %q", in.Name())
			}
		})
	}
}

// The PIR on a sim pin: motion starts, then stops, one Event each.
func TestWatchSimPin(t *testing.T) {
	fc := clockwork.NewFakeClockAt(t0)
	pin := sim.NewInputPin("GPIO4")
	pin.Clock = fc
	in, err := motion.New("pir", pin, motion.Opts{Clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan sensors.Event, 8)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Watch(ctx, events) }()
	step := func(level bool) {
		t.Helper()
		if err := fc.BlockUntilContext(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		pin.Set(level)
		if err := pin.WaitEdgesConsumed(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := fc.BlockUntilContext(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		fc.Advance(50 * time.Millisecond) // the default debounce
	}
	step(true)
	got := []sensors.Event{<-events}
	step(false)
	got = append(got, <-events)
	want := []sensors.Event{
		{Sensor: "pir", Active: true, Time: t0},
		{Sensor: "pir", Active: false, Time: t0.Add(50 * time.Millisecond)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// Let Watch be waiting on the clock before it is cancelled: an
	// Advance while it is between two waits would be lost.
	if err := fc.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	fc.Advance(time.Second) // the default poll interval
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v, want context.Canceled", err)
	}
}

// gpiotest.Pin directly, as a driver test in periph would do it.
func TestWatchGpiotestPin(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO4", Num: 4, EdgesChan: make(chan gpio.Level, 16)}
	in, err := motion.New("pir", pin, motion.Opts{Debounce: 10 * time.Millisecond, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if pin.Pull() != gpio.PullDown {
		t.Errorf("pull = %v, want PullDown", pin.Pull())
	}
	// Queue a bouncy rising edge before Watch: one Event.
	for _, l := range []gpio.Level{gpio.High, gpio.Low, gpio.High} {
		pin.EdgesChan <- l
	}
	events := make(chan sensors.Event, 8)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Watch(ctx, events) }()
	select {
	case e := <-events:
		if !e.Active || e.Sensor != "pir" {
			t.Errorf("event = %+v, want pir active", e)
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
	if _, err := motion.New("pir", &gpiotest.Pin{N: "GPIO4"}, motion.Opts{}); err == nil {
		t.Error("New on a gpiotest.Pin without EdgesChan succeeded")
	}
	if _, err := motion.New("pir", nil, motion.Opts{}); err == nil {
		t.Error("New with a nil pin succeeded")
	}
	if _, err := motion.New("pir", sim.NewInputPin("GPIO4"), motion.Opts{Debounce: -time.Second}); err == nil {
		t.Error("New with a negative debounce succeeded")
	}
}
