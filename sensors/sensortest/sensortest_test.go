package sensortest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sensortest"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func TestFakeSensor(t *testing.T) {
	s := sensortest.NewFakeSensor("temp")
	s.Set(sensors.Reading{Time: t0, TemperatureC: 21.5})
	got, err := s.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sensors.Reading{Sensor: "temp", Time: t0, TemperatureC: 21.5}, got); diff != "" {
		t.Errorf("Read (-want +got):\n%s", diff)
	}
	boom := errors.New("boom")
	s.SetErr(boom)
	if _, err := s.Read(t.Context()); !errors.Is(err, boom) {
		t.Errorf("Read = %v, want %v", err, boom)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s.SetErr(nil)
	if _, err := s.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Read = %v, want context.Canceled", err)
	}
	if s.Reads() != 3 || s.Name() != "temp" {
		t.Errorf("Reads() = %d, Name() = %q", s.Reads(), s.Name())
	}
}

func TestFakeSensorBlock(t *testing.T) {
	s := sensortest.NewFakeSensor("bme280")
	s.Set(sensors.Reading{Time: t0, TemperatureC: 21.5})
	started, release := s.Block()
	type result struct {
		R   sensors.Reading
		Err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := s.Read(t.Context())
		done <- result{r, err}
	}()
	<-started
	select {
	case res := <-done:
		t.Fatalf("Read returned %+v while blocked", res)
	default:
	}
	release()
	release() // a second release is harmless
	res := <-done
	if diff := cmp.Diff(result{R: sensors.Reading{Sensor: "bme280", Time: t0, TemperatureC: 21.5}}, res,
		cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })); diff != "" {
		t.Errorf("Read after release (-want +got):\n%s", diff)
	}
	if _, err := s.Read(t.Context()); err != nil {
		t.Errorf("Read after release = %v", err)
	}

	// A blocked Read ends with its ctx.
	started, release = s.Block()
	defer release()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { _, err := s.Read(ctx); errc <- err }()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("blocked Read after cancel = %v, want context.Canceled", err)
	}
	if s.Reads() != 3 {
		t.Errorf("Reads() = %d, want 3", s.Reads())
	}
}

func TestFakeInputQueuesBeforeWatch(t *testing.T) {
	in := sensortest.NewFakeInput("pir")
	in.SetNow(func() time.Time { return t0 })
	in.Trigger(true) // before Watch: queued
	in.Trigger(true) // no change: nothing
	if got, _ := in.Active(); !got {
		t.Error("Active() = false after Trigger(true)")
	}
	events := make(chan sensors.Event)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Watch(ctx, events) }()
	got := []sensors.Event{<-events}
	in.Trigger(false)
	got = append(got, <-events)
	want := []sensors.Event{{Sensor: "pir", Active: true, Time: t0}, {Sensor: "pir", Active: false, Time: t0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if err := in.Watch(ctx, events); !errors.Is(err, sensors.ErrWatching) {
		t.Errorf("second Watch = %v, want ErrWatching", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v, want context.Canceled", err)
	}
}

func TestFakeInputErr(t *testing.T) {
	in := sensortest.NewFakeInput("lid")
	done := make(chan error, 1)
	go func() { done <- in.Watch(t.Context(), make(chan sensors.Event)) }()
	boom := errors.New("line gone")
	in.SetErr(boom)
	if err := <-done; !errors.Is(err, boom) {
		t.Errorf("Watch = %v, want %v", err, boom)
	}
	if _, err := in.Active(); !errors.Is(err, boom) {
		t.Errorf("Active = %v, want %v", err, boom)
	}
}

func TestFakeOutput(t *testing.T) {
	o := sensortest.NewFakeOutput("led")
	for _, on := range []bool{true, true, false} {
		if err := o.Set(on); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	o.SetErr(boom)
	if err := o.Set(true); !errors.Is(err, boom) {
		t.Errorf("Set = %v, want %v", err, boom)
	}
	if o.On() {
		t.Error("On() = true after a failed Set(true)")
	}
	if diff := cmp.Diff([]bool{true, true, false, true}, o.Calls()); diff != "" {
		t.Errorf("Calls (-want +got):\n%s", diff)
	}
}

var (
	_ sensors.Sensor = (*sensortest.FakeSensor)(nil)
	_ sensors.Input  = (*sensortest.FakeInput)(nil)
	_ sensors.Output = (*sensortest.FakeOutput)(nil)
)
