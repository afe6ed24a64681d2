package sensors

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"periph.io/x/conn/v3/i2c"
)

// Values are the readings of one part at one time, keyed by reading name.
// A name carries its unit: temperature_c, humidity_pct, pressure_kpa, lux,
// co2_ppm, voltage_v, current_a, power_w, and so on. Every value is finite:
// a driver returns an error instead of NaN or ±Inf.
type Values map[string]float64

// Sampler is a part that is read on an interval: an I²C or 1-Wire sensor,
// the CPU temperature, a command. Read returns one set of readings; Close
// releases the part. Both are safe to call from one goroutine at a time.
type Sampler interface {
	Read(ctx context.Context) (Values, error)
	Close() error
}

// Part is one configured part as its driver sees it.
type Part struct {
	// Name is the part's name in the config ("soil", "fridge").
	Name string
	// Type is the registry key ("mcp9808", "ds18b20").
	Type string
	// Bus is the I²C bus name for i2creg.Open ("1", "/dev/i2c-1"); empty
	// means the first bus.
	Bus string
	// Address is the I²C address; zero means the driver's default.
	Address uint16
	// Device names a part on its bus that has no address: a 1-Wire
	// device's id (28-0123456789ab), a file.
	Device string
	// Sim selects the simulated counterpart (Driver.Sim) instead of the
	// real bus.
	Sim bool
	// Options are the driver's own settings, decoded strictly by the
	// driver (unknown keys are an error that names the key).
	Options json.RawMessage
}

// Host is what a driver opens a part through. The agent passes the real
// machine's; a simulated part gets the one Driver.Sim returns.
type Host struct {
	// OpenI2C opens an I²C bus by name.
	OpenI2C func(bus string) (i2c.BusCloser, error)
	// Root is prefixed to the paths of files a driver reads
	// (/sys/bus/w1/devices, /sys/class/thermal); empty means "/".
	Root string
}

// SimControl sets what a simulated part reads next.
type SimControl interface {
	// Set makes the next reads return value for the reading name. It
	// fails for a name the part does not have or a value the real part
	// could not report.
	Set(name string, value float64) error
	// Close releases the simulation (its temporary files).
	Close() error
}

// Driver opens one type of part.
type Driver struct {
	// Type is the registry key used in the config's "type".
	Type string
	// Summary is one line for docs and `iotagent --help`.
	Summary string
	// Open opens the part through h.
	Open func(ctx context.Context, p Part, h Host) (Sampler, error)
	// Sim returns the simulated counterpart of p: a Host whose bus or
	// files emulate the part at the register or file level, for Open to
	// drive the real driver code against, and its control. Nil when the
	// type has no simulation.
	Sim func(p Part) (Host, SimControl, error)
}

var registry struct {
	sync.RWMutex
	m map[string]Driver
}

// Register adds a driver. It panics on an empty or duplicate type or a nil
// Open, as these are programming errors found at init.
func Register(d Driver) {
	registry.Lock()
	defer registry.Unlock()
	if d.Type == "" || d.Open == nil {
		panic("sensors: Register needs a Type and an Open")
	}
	if _, dup := registry.m[d.Type]; dup {
		panic(fmt.Sprintf("sensors: driver %q registered twice", d.Type))
	}
	if registry.m == nil {
		registry.m = map[string]Driver{}
	}
	registry.m[d.Type] = d
}

// Lookup returns the driver registered for typ.
func Lookup(typ string) (Driver, bool) {
	registry.RLock()
	defer registry.RUnlock()
	d, ok := registry.m[typ]
	return d, ok
}

// Types lists the registered types, sorted.
func Types() []string {
	registry.RLock()
	defer registry.RUnlock()
	t := make([]string, 0, len(registry.m))
	for k := range registry.m {
		t = append(t, k)
	}
	slices.Sort(t)
	return t
}
