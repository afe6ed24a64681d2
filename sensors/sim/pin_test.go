package sim_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"

	"github.com/iotagent/iotagent/sensors/sim"
)

func TestPinSetBeforeInKeepsLevel(t *testing.T) {
	p := sim.NewInputPin("SIM1")
	p.Set(true)
	if err := p.In(gpio.PullDown, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	if got := p.Read(); got != gpio.High {
		t.Errorf("Read() after Set(true), In(PullDown) = %v, want High", got)
	}
	if p.WaitForEdge(0) {
		t.Error("an edge from before In was delivered")
	}
}

func TestPinEdges(t *testing.T) {
	p := sim.NewInputPin("SIM2")
	p.Set(true) // edge detection off: no edge queued
	if err := p.In(gpio.Float, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	p.Set(true) // no change: no edge
	if p.WaitForEdge(0) {
		t.Fatal("Set to the same level delivered an edge")
	}
	p.Set(false)
	if !p.WaitForEdge(0) {
		t.Fatal("Set(false) delivered no edge")
	}
	if got := p.Read(); got != gpio.Low {
		t.Errorf("Read() = %v, want Low", got)
	}
	if err := p.WaitEdgesConsumed(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Flooding drops edges beyond the queue but keeps the last level.
	for i := range 1000 {
		p.Set(i%2 == 0)
	}
	n := 0
	for p.WaitForEdge(0) {
		n++
	}
	if n == 0 || n > 64 {
		t.Errorf("%d edges queued, want 1..64", n)
	}
	if got := p.Read(); got != gpio.Low { // the last Set was false (i=999)
		t.Errorf("Read() after the flood = %v, want Low", got)
	}
	if err := p.WaitEdgesConsumed(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestPinWaitForEdgeTimeoutOnFakeClock(t *testing.T) {
	fc := clockwork.NewFakeClock()
	p := sim.NewInputPin("SIM3")
	p.Clock = fc
	if err := p.In(gpio.PullDown, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	got := make(chan bool)
	go func() { got <- p.WaitForEdge(time.Second) }()
	if err := fc.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	fc.Advance(time.Second)
	if <-got {
		t.Fatal("WaitForEdge reported an edge on timeout")
	}
	go func() { got <- p.WaitForEdge(time.Second) }()
	if err := fc.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	p.Set(true)
	if !<-got {
		t.Fatal("WaitForEdge missed the edge")
	}
	// The timer was stopped: no stale waiter is left on the fake clock.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := fc.BlockUntilContext(ctx, 1); err == nil {
		t.Error("a timer is still registered after WaitForEdge returned")
	}
}

func TestPinRegistersInGpioreg(t *testing.T) {
	p := sim.NewInputPin("SIM_GPIO4")
	if err := gpioreg.Register(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gpioreg.Unregister("SIM_GPIO4") })
	if got := gpioreg.ByName("SIM_GPIO4"); got != p {
		t.Errorf("ByName = %v, want the sim pin", got)
	}
}

func TestOutputPin(t *testing.T) {
	p := sim.NewOutputPin("LED")
	if p.On() {
		t.Error("new output pin is on")
	}
	for _, l := range []gpio.Level{gpio.High, gpio.Low, gpio.High} {
		if err := p.Out(l); err != nil {
			t.Fatal(err)
		}
	}
	if !p.On() {
		t.Error("On() = false after Out(High)")
	}
	if diff := cmp.Diff([]bool{true, false, true}, p.History()); diff != "" {
		t.Errorf("History (-want +got):\n%s", diff)
	}
}

// Halt wakes a reader blocked without a timeout.
func TestPinHaltWakesWaiter(t *testing.T) {
	pin := sim.NewInputPin("GPIO4")
	if err := pin.In(gpio.PullDown, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	done := make(chan bool)
	go func() { done <- pin.WaitForEdge(-1) }()
	if err := pin.Halt(); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got {
		t.Error("WaitForEdge after Halt = true, want false")
	}
}
