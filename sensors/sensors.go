package sensors

import (
	"context"
	"errors"
	"time"
)

// Reading is one sample of an environmental sensor.
type Reading struct {
	Sensor       string
	Time         time.Time
	TemperatureC float64
	HumidityPct  float64
	PressureKPa  float64
}

// Sensor is an environmental sensor that is sampled on demand.
type Sensor interface {
	Name() string
	Read(ctx context.Context) (Reading, error)
}

// Event is a debounced change of a digital input.
type Event struct {
	Sensor string
	Active bool
	Time   time.Time
}

// Input is a debounced digital input (PIR motion, lid contact).
type Input interface {
	Name() string
	// Active reports the current debounced level.
	Active() (bool, error)
	// Watch blocks until ctx ends and sends an Event on every debounced
	// change. It returns ctx.Err() or a read error.
	Watch(ctx context.Context, events chan<- Event) error
}

// Output is a digital output (LED, buzzer).
type Output interface {
	Name() string
	Set(on bool) error
	On() bool
}

// Sentinel errors shared by the drivers. Test with errors.Is.
var (
	// ErrClosed is returned by operations on a closed or halted device.
	ErrClosed = errors.New("sensors: device closed")
	// ErrWatching is returned by Watch when the input is already being
	// watched: only one goroutine may consume a pin's edges.
	ErrWatching = errors.New("sensors: input is already being watched")
	// ErrNoEdgeWait is returned by Watch when the pin keeps returning from
	// WaitForEdge without waiting (a halted line, or a driver that treats
	// the timeout differently), which would otherwise be a busy loop.
	ErrNoEdgeWait = errors.New("sensors: pin returns from WaitForEdge without waiting")
)
