// Package bme280 reads a Bosch BME280 (temperature, humidity, pressure) over
// I²C through periph.io's bmxx80 driver and returns [sensors.Reading]s.
//
// By default each Read triggers one forced-mode measurement (bmxx80's
// Sense), which takes about 26 ms at 4x oversampling; Opts.Standby and
// Opts.Filter select normal mode instead, where the chip measures on its own
// and Read returns at once. New talks to the chip
// (chip id, calibration, configuration) and rejects anything that is not a
// BME280 at 0x76 or 0x77.
package bme280

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"

	"github.com/iotagent/iotagent/sensors"
)

// I²C addresses of a BME280 (SDO low or high).
const (
	AddrLow  uint16 = 0x76
	AddrHigh uint16 = 0x77
)

// Errors returned by New and Read; test with errors.Is.
var (
	// ErrBadAddress: the address is not 0x76 or 0x77.
	ErrBadAddress = errors.New("bme280: address not supported (want 0x76 or 0x77)")
	// ErrWrongChip: the chip answered but is not a BME280 (a BMP280 or
	// BMP180 has no humidity sensor).
	ErrWrongChip = errors.New("bme280: chip is not a BME280")
	// ErrNoMeasurement: the chip lost its configuration (a brown-out
	// resets it, and then it skips the humidity measurement). Read has
	// configured it again; the next Read should succeed.
	ErrNoMeasurement = errors.New("bme280: chip was reset and made no humidity measurement")
	// ErrImplausible: the compensated values are outside the sensor's
	// operating range (-40..85 °C, 30..110 kPa, 0..100 %RH).
	ErrImplausible = errors.New("bme280: reading outside the sensor's range")
)

// Opts configures the sensor.
type Opts struct {
	// Oversampling applies to temperature, pressure and humidity; zero
	// means bmxx80.O4x (bmxx80.DefaultOpts). Higher values are slower
	// and less noisy.
	Oversampling bmxx80.Oversampling
	// Standby and Filter select normal mode: the chip then measures on its
	// own every Standby (rounded to the chip's steps, 0.5 ms to 1 s) through
	// its IIR Filter, and Read returns the latest values at once. Both must
	// be set; the zero values select forced mode, where each Read triggers
	// a measurement (about 26 ms at 4x), the low-power choice for slow
	// sampling.
	Standby time.Duration
	Filter  bmxx80.Filter
	// Now stamps readings; nil means time.Now.
	Now func() time.Time
}

// BME280 is one sensor. It is safe for concurrent use.
type BME280 struct {
	name string
	now  func() time.Time
	tap  *tap
	addr uint16
	opts bmxx80.Opts

	mu     sync.Mutex
	dev    *bmxx80.Dev
	closed bool
}

var _ sensors.Sensor = (*BME280)(nil)

// New initialises the BME280 at addr on bus.
func New(name string, bus i2c.Bus, addr uint16, o Opts) (*BME280, error) {
	if name == "" {
		return nil, errors.New("new bme280: empty name")
	}
	if bus == nil {
		return nil, fmt.Errorf("new bme280 %s: nil bus", name)
	}
	if addr != AddrLow && addr != AddrHigh {
		return nil, fmt.Errorf("new bme280 %s at %#x: %w", name, addr, ErrBadAddress)
	}
	ovs := o.Oversampling
	if ovs == bmxx80.Off {
		ovs = bmxx80.O4x
	}
	if ovs > bmxx80.O16x {
		return nil, fmt.Errorf("new bme280 %s: invalid oversampling %d", name, ovs)
	}
	if o.Standby < 0 || (o.Standby > 0) != (o.Filter != bmxx80.NoFilter) || o.Filter > bmxx80.F16 {
		return nil, fmt.Errorf("new bme280 %s: standby %v with filter %d: normal mode needs both (filter 1..4), forced mode neither", name, o.Standby, o.Filter)
	}
	b := &BME280{
		name: name,
		now:  o.Now,
		tap:  &tap{bus: bus},
		addr: addr,
		opts: bmxx80.Opts{Temperature: ovs, Pressure: ovs, Humidity: ovs, Standby: o.Standby, Filter: o.Filter},
	}
	if b.now == nil {
		b.now = time.Now
	}
	if err := b.initLocked(); err != nil {
		return nil, err
	}
	return b, nil
}

// initLocked (re)initialises the chip: chip id, calibration, configuration.
func (b *BME280) initLocked() error {
	b.tap.reset()
	dev, err := bmxx80.NewI2C(b.tap, b.addr, &b.opts)
	if id, ok := b.tap.chip(); err != nil && ok && id != chipIDBME280 {
		return fmt.Errorf("init bme280 %s at %#x on %s: chip id %#02x: %w", b.name, b.addr, b.tap, id, ErrWrongChip)
	}
	if err != nil {
		return fmt.Errorf("init bme280 %s at %#x on %s: %w", b.name, b.addr, b.tap, b.tap.cause(err))
	}
	// bmxx80 accepts BMP180 and BMP280 too; its String is "NAME{bus}".
	if s := dev.String(); !strings.HasPrefix(s, "BME280{") {
		return fmt.Errorf("init bme280 %s at %#x on %s: found %s: %w", b.name, b.addr, b.tap, s, ErrWrongChip)
	}
	b.dev = dev
	return nil
}

// Name returns the sensor's name.
func (b *BME280) Name() string { return b.name }

// String describes the device, for logs.
func (b *BME280) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.name + ":" + b.dev.String()
}

// Read makes one measurement. The measurement itself (tens of ms) is not
// interruptible; ctx is checked before it starts.
func (b *BME280) Read(ctx context.Context) (sensors.Reading, error) {
	if err := ctx.Err(); err != nil {
		return sensors.Reading{}, fmt.Errorf("read bme280 %s: %w", b.name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return sensors.Reading{}, fmt.Errorf("read bme280 %s: %w", b.name, sensors.ErrClosed)
	}
	b.tap.reset()
	var env physic.Env
	if err := b.dev.Sense(&env); err != nil {
		return sensors.Reading{}, fmt.Errorf("read bme280 %s: %w", b.name, b.tap.cause(err))
	}
	if err := b.checkResetLocked(); err != nil {
		return sensors.Reading{}, fmt.Errorf("read bme280 %s: %w", b.name, err)
	}
	r := sensors.Reading{
		Sensor:       b.name,
		Time:         b.now(),
		TemperatureC: float64(env.Temperature-physic.ZeroCelsius) / float64(physic.Celsius),
		HumidityPct:  float64(env.Humidity) / float64(physic.PercentRH),
		PressureKPa:  float64(env.Pressure) / float64(physic.KiloPascal),
	}
	if err := check(r); err != nil {
		return sensors.Reading{}, fmt.Errorf("read bme280 %s: %w", b.name, err)
	}
	return r, nil
}

// regCtrlHum is the BME280's humidity oversampling register; a reset
// clears it, and then humidity reads 0x8000 ("skipped").
const regCtrlHum = 0xF2

// checkResetLocked recognises a chip that was reset behind the driver's
// back. The driver rewrites ctrl_meas on every Sense, so temperature and
// pressure are still measured, but ctrl_hum is back to 0 and humidity reads
// its "skipped" value 0x8000. That value can also be a genuine reading, so
// ctrl_hum is read to tell the two apart (one extra transaction, only then).
func (b *BME280) checkResetLocked() error {
	if !b.tap.skippedHumidity() {
		return nil
	}
	var v [1]byte
	if err := b.tap.bus.Tx(b.addr, []byte{regCtrlHum}, v[:]); err != nil {
		return fmt.Errorf("check ctrl_hum: %w", err)
	}
	if v[0]&7 == byte(b.opts.Humidity) {
		return nil
	}
	if err := b.initLocked(); err != nil {
		return fmt.Errorf("%w; reinitialise: %w", ErrNoMeasurement, err)
	}
	return ErrNoMeasurement
}

// Operating range from the datasheet (§1, "Operating range").
const (
	minC, maxC     = -40, 85
	minKPa, maxKPa = 30, 110
	minRH, maxRH   = 0, 100
)

// rangeSlack absorbs rounding at the ends of the range (the resolution is
// 0.01 °C, 1/256 Pa and 1/1024 %RH).
const rangeSlack = 0.001

func check(r sensors.Reading) error {
	in := func(v, lo, hi float64) bool { return !math.IsNaN(v) && v >= lo-rangeSlack && v <= hi+rangeSlack }
	if !in(r.TemperatureC, minC, maxC) || !in(r.PressureKPa, minKPa, maxKPa) || !in(r.HumidityPct, minRH, maxRH) {
		return fmt.Errorf("%.2f °C, %.3f kPa, %.2f %%RH: %w", r.TemperatureC, r.PressureKPa, r.HumidityPct, ErrImplausible)
	}
	return nil
}

// Close halts the device; later Reads return sensors.ErrClosed. It is
// idempotent.
func (b *BME280) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if err := b.dev.Halt(); err != nil {
		return fmt.Errorf("halt bme280 %s: %w", b.name, err)
	}
	return nil
}

// Halt is Close, for periph's conn.Resource habit.
func (b *BME280) Halt() error { return b.Close() }

// tap sits between bmxx80 and the bus. bmxx80 formats bus errors with %v,
// so the tap keeps the original error for errors.Is, and it keeps the last
// data frame to recognise the registers' reset value.
type tap struct {
	bus i2c.Bus

	mu     sync.Mutex
	err    error
	frame  [8]byte
	gotRaw bool
	id     byte
	gotID  bool
}

// dataReg is the first data register (press_msb); a BME280 frame is 8 bytes.
const dataReg = 0xF7

// chipIDReg holds the chip id, chipIDBME280 on a BME280.
const (
	chipIDReg    = 0xD0
	chipIDBME280 = 0x60
)

func (t *tap) String() string                    { return t.bus.String() }
func (t *tap) SetSpeed(f physic.Frequency) error { return t.bus.SetSpeed(f) }

func (t *tap) Tx(addr uint16, w, r []byte) error {
	err := t.bus.Tx(addr, w, r)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.err = err
		return err
	}
	if len(w) == 1 && w[0] == dataReg && len(r) == len(t.frame) {
		copy(t.frame[:], r)
		t.gotRaw = true
	}
	if len(w) == 1 && w[0] == chipIDReg && len(r) == 1 {
		t.id, t.gotID = r[0], true
	}
	return nil
}

// chip returns the chip id read since the last reset, if any.
func (t *tap) chip() (byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id, t.gotID
}

func (t *tap) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.err, t.gotRaw, t.gotID = nil, false, false
}

// cause returns the bus error behind err if there was one, else err.
func (t *tap) cause(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	return err
}

// skippedHumidity reports whether the last data frame's humidity is 0x8000.
func (t *tap) skippedHumidity() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gotRaw && t.frame[6] == 0x80 && t.frame[7] == 0
}
