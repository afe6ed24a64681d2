package bme280_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/devices/v3/bmxx80"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/bme280"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Calibration blocks of the Bosch datasheet example (dig_T1=27504,
// dig_T2=26435, dig_T3=-1000, dig_P1=36477 … dig_P9=6000), humidity
// H1=75, H2=366, H3=0, H4=309, H5=0, H6=30.
var (
	calib88 = []byte{0x70, 0x6b, 0x43, 0x67, 0x18, 0xfc, 0x7d, 0x8e, 0x43, 0xd6, 0xd0, 0x0b, 0x27, 0x0b, 0x8c, 0x00, 0xf9, 0xff, 0x8c, 0x3c, 0xf8, 0xc6, 0x70, 0x17, 0x00, 0x4b}
	calibE1 = []byte{0x6e, 0x01, 0x00, 0x13, 0x05, 0x00, 0x1e}
	// adc_P=415148, adc_T=519888 (the datasheet example), adc_H=0x6400.
	frame = []byte{0x65, 0x5a, 0xc0, 0x7e, 0xed, 0x00, 0x64, 0x00}
)

// initOps is what bmxx80.NewI2C sends with the default (4x) oversampling.
func initOps(addr uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xd0}, R: []byte{0x60}},
		{Addr: addr, W: []byte{0x88}, R: calib88},
		{Addr: addr, W: []byte{0xe1}, R: calibE1},
		{Addr: addr, W: []byte{0xf4, 0x6c, 0xf2, 0x03, 0xf5, 0xa0, 0xf4, 0x6c}},
	}
}

// senseOps is one forced measurement returning data.
func senseOps(addr uint16, data []byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xf4, 0x6d}},
		{Addr: addr, W: []byte{0xf3}, R: []byte{0x00}},
		{Addr: addr, W: []byte{0xf7}, R: data},
	}
}

var fixed = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func opts() bme280.Opts { return bme280.Opts{Now: func() time.Time { return fixed }} }

// approx compares floats to the driver's resolution.
var approx = cmpopts.EquateApprox(0, 1e-9)

func TestReadPlaybackDatasheetTranscript(t *testing.T) {
	for _, addr := range []uint16{0x76, 0x77} {
		pb := &i2ctest.Playback{Ops: append(initOps(addr), senseOps(addr, frame)...), DontPanic: true}
		dev, err := bme280.New("box", pb, addr, opts())
		if err != nil {
			t.Fatalf("New(%#x): %v", addr, err)
		}
		got, err := dev.Read(t.Context())
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		want := sensors.Reading{Sensor: "box", Time: fixed, TemperatureC: 25.08, PressureKPa: 100.65325390625, HumidityPct: 33.1171}
		if diff := cmp.Diff(want, got, approx); diff != "" {
			t.Errorf("Read at %#x (-want +got):\n%s", addr, diff)
		}
		if err := dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := pb.Close(); err != nil { // every op used, none extra (Halt sends nothing)
			t.Errorf("playback: %v", err)
		}
	}
}

func TestReadSimMatchesSetValues(t *testing.T) {
	bus := sim.NewBME280(0x76, 20, 50, 101.325)
	dev, err := bme280.New("box", bus, 0x76, bme280.Opts{Oversampling: bmxx80.O1x})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tempC, rh, kPa float64
	}{
		{31.5, 40, 100},
		{-40, 0, 30},
		{85, 100, 110},
		{0, 12.34, 95.5},
		{25.08, 35.2, 100.653},
		{-12.345, 99.9, 70},
	}
	for _, tt := range tests {
		if err := bus.SetTemperature(tt.tempC); err != nil {
			t.Fatal(err)
		}
		if err := bus.SetHumidity(tt.rh); err != nil {
			t.Fatal(err)
		}
		if err := bus.SetPressure(tt.kPa); err != nil {
			t.Fatal(err)
		}
		for i := range 3 { // the emulator answers any number of reads
			got, err := dev.Read(t.Context())
			if err != nil {
				t.Fatalf("%+v read %d: %v", tt, i, err)
			}
			if d := math.Abs(got.TemperatureC - tt.tempC); d > 0.01 {
				t.Errorf("%+v read %d: temperature %v °C, off by %v", tt, i, got.TemperatureC, d)
			}
			if d := math.Abs(got.HumidityPct - tt.rh); d > 0.01 { // one ADC count is 0.006..0.01 %RH
				t.Errorf("%+v read %d: humidity %v %%, off by %v", tt, i, got.HumidityPct, d)
			}
			if d := math.Abs(got.PressureKPa - tt.kPa); d > 0.0001 {
				t.Errorf("%+v read %d: pressure %v kPa, off by %v", tt, i, got.PressureKPa, d)
			}
		}
	}
}

func TestReadSimTemperatureManyTimes(t *testing.T) {
	bus := sim.NewBME280(0x77, 20, 45, 101.3)
	dev, err := bme280.New("box", bus, 0x77, bme280.Opts{Oversampling: bmxx80.O1x})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.SetTemperature(31.5); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		got, err := dev.Read(t.Context())
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if math.Abs(got.TemperatureC-31.5) > 0.01 {
			t.Fatalf("read %d: %v °C, want 31.5±0.01", i, got.TemperatureC)
		}
	}
}

func TestNewErrors(t *testing.T) {
	errBus := errors.New("bus unplugged")
	failing := sim.NewBME280(0x76, 20, 50, 100)
	failing.SetErr(errBus)
	bmp280 := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x58}},
		{Addr: 0x76, W: []byte{0x88}, R: calib88},
		{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf5, 0xa0, 0xf4, 0x6c}},
	}}
	unknown := &i2ctest.Playback{DontPanic: true, Ops: []i2ctest.IO{{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x42}}}}
	tests := []struct {
		name    string
		devName string
		bus     func() *sim.BME280Bus
		pb      *i2ctest.Playback
		addr    uint16
		wantIs  error
	}{
		{name: "address 0x40", devName: "box", bus: func() *sim.BME280Bus { return sim.NewBME280(0x40, 20, 50, 100) }, addr: 0x40, wantIs: bme280.ErrBadAddress},
		{name: "address 0", devName: "box", bus: func() *sim.BME280Bus { return sim.NewBME280(0x76, 20, 50, 100) }, addr: 0, wantIs: bme280.ErrBadAddress},
		{name: "nothing at 0x77", devName: "box", bus: func() *sim.BME280Bus { return sim.NewBME280(0x76, 20, 50, 100) }, addr: 0x77, wantIs: sim.ErrNACK},
		{name: "bus error", devName: "box", bus: func() *sim.BME280Bus { return failing }, addr: 0x76, wantIs: errBus},
		{name: "bmp280", devName: "box", pb: bmp280, addr: 0x76, wantIs: bme280.ErrWrongChip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.pb != nil {
				_, err = bme280.New(tt.devName, tt.pb, tt.addr, bme280.Opts{})
			} else {
				_, err = bme280.New(tt.devName, tt.bus(), tt.addr, bme280.Opts{})
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("New: got %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
	t.Run("unknown chip id", func(t *testing.T) {
		if _, err := bme280.New("box", unknown, 0x76, bme280.Opts{}); !errors.Is(err, bme280.ErrWrongChip) {
			t.Fatalf("New with chip id 0x42 = %v, want ErrWrongChip", err)
		}
	})
	t.Run("empty name", func(t *testing.T) {
		if _, err := bme280.New("", sim.NewBME280(0x76, 20, 50, 100), 0x76, bme280.Opts{}); err == nil {
			t.Fatal("New with empty name succeeded")
		}
	})
	t.Run("nil bus", func(t *testing.T) {
		if _, err := bme280.New("box", nil, 0x76, bme280.Opts{}); err == nil {
			t.Fatal("New with nil bus succeeded")
		}
	})
	t.Run("bad oversampling", func(t *testing.T) {
		if _, err := bme280.New("box", sim.NewBME280(0x76, 20, 50, 100), 0x76, bme280.Opts{Oversampling: 9}); err == nil {
			t.Fatal("New with oversampling 9 succeeded")
		}
	})
}

func TestReadErrors(t *testing.T) {
	errBus := errors.New("i2c: remote I/O error")
	newDev := func(t *testing.T) (*sim.BME280Bus, *bme280.BME280) {
		t.Helper()
		bus := sim.NewBME280(0x76, 20, 50, 100)
		dev, err := bme280.New("box", bus, 0x76, bme280.Opts{Oversampling: bmxx80.O1x})
		if err != nil {
			t.Fatal(err)
		}
		return bus, dev
	}
	t.Run("bus error then recovery", func(t *testing.T) {
		bus, dev := newDev(t)
		bus.SetErr(errBus)
		if _, err := dev.Read(t.Context()); !errors.Is(err, errBus) {
			t.Fatalf("Read: got %v, want %v", err, errBus)
		}
		bus.SetErr(nil)
		if _, err := dev.Read(t.Context()); err != nil {
			t.Fatalf("Read after recovery: %v", err)
		}
	})
	t.Run("power cycled chip is reinitialised", func(t *testing.T) {
		bus, dev := newDev(t)
		bus.PowerCycle()
		if _, err := dev.Read(t.Context()); !errors.Is(err, bme280.ErrNoMeasurement) {
			t.Fatalf("Read: got %v, want ErrNoMeasurement", err)
		}
		got, err := dev.Read(t.Context())
		if err != nil {
			t.Fatalf("Read after reinitialisation: %v", err)
		}
		if math.Abs(got.TemperatureC-20) > 0.01 || math.Abs(got.HumidityPct-50) > 0.001 {
			t.Errorf("Read after reinitialisation = %+v, want 20 °C, 50 %%RH", got)
		}
	})
	t.Run("closed", func(t *testing.T) {
		_, dev := newDev(t)
		for range 2 { // idempotent
			if err := dev.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := dev.Halt(); err != nil {
			t.Fatal(err)
		}
		if _, err := dev.Read(t.Context()); !errors.Is(err, sensors.ErrClosed) {
			t.Fatalf("Read: got %v, want ErrClosed", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		bus, dev := newDev(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		before := bus.Transactions()
		if _, err := dev.Read(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Read: got %v, want context.Canceled", err)
		}
		if n := bus.Transactions() - before; n != 0 {
			t.Errorf("Read with cancelled ctx made %d transactions", n)
		}
	})
	t.Run("playback mismatch", func(t *testing.T) {
		pb := &i2ctest.Playback{Ops: initOps(0x76), DontPanic: true} // no sense ops
		dev, err := bme280.New("box", pb, 0x76, bme280.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dev.Read(t.Context()); err == nil {
			t.Fatal("Read past the end of the transcript succeeded")
		}
	})
	t.Run("implausible", func(t *testing.T) {
		// adc_T = 0xFFFFF compensates to 187.55 °C.
		pb := &i2ctest.Playback{Ops: append(initOps(0x76), senseOps(0x76, []byte{0x65, 0x5a, 0xc0, 0xff, 0xff, 0xf0, 0x64, 0x00})...), DontPanic: true}
		dev, err := bme280.New("box", pb, 0x76, bme280.Opts{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dev.Read(t.Context()); !errors.Is(err, bme280.ErrImplausible) {
			t.Fatalf("Read: got %v, want ErrImplausible", err)
		}
	})
}

// A humidity of exactly 0x8000 is either a genuine reading or the value of
// a reset chip; ctrl_hum tells which.
func TestReadHumidity0x8000(t *testing.T) {
	data := []byte{0x65, 0x5a, 0xc0, 0x7e, 0xed, 0x00, 0x80, 0x00}
	t.Run("genuine", func(t *testing.T) {
		ops := append(initOps(0x76), senseOps(0x76, data)...)
		ops = append(ops, i2ctest.IO{Addr: 0x76, W: []byte{0xf2}, R: []byte{0x03}})
		pb := &i2ctest.Playback{Ops: ops, DontPanic: true}
		dev, err := bme280.New("box", pb, 0x76, opts())
		if err != nil {
			t.Fatal(err)
		}
		got, err := dev.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := sensors.Reading{Sensor: "box", Time: fixed, TemperatureC: 25.08, PressureKPa: 100.65325390625, HumidityPct: 73.4423}
		if diff := cmp.Diff(want, got, approx); diff != "" {
			t.Errorf("Read (-want +got):\n%s", diff)
		}
		if err := pb.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		ops := append(initOps(0x76), senseOps(0x76, data)...)
		ops = append(ops, i2ctest.IO{Addr: 0x76, W: []byte{0xf2}, R: []byte{0x00}})
		ops = append(ops, initOps(0x76)...)
		pb := &i2ctest.Playback{Ops: ops, DontPanic: true}
		dev, err := bme280.New("box", pb, 0x76, opts())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dev.Read(t.Context()); !errors.Is(err, bme280.ErrNoMeasurement) {
			t.Fatalf("Read: got %v, want ErrNoMeasurement", err)
		}
		if err := pb.Close(); err != nil { // reinitialised: the init ops were replayed
			t.Error(err)
		}
	})
}

func TestName(t *testing.T) {
	dev, err := bme280.New("box-temp", sim.NewBME280(0x76, 20, 50, 100), 0x76, bme280.Opts{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dev.Name(); got != "box-temp" {
		t.Errorf("Name() = %q", got)
	}
	got, err := dev.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.Sensor != "box-temp" || got.Time.IsZero() {
		t.Errorf("Read() = %+v, want Sensor box-temp and a time", got)
	}
}

// normalOps is what bmxx80.NewI2C sends for normal mode with a 1 s standby
// and filter F4; Sense then reads the data block without a measurement
// delay, which keeps the fuzzer fast.
func normalOps(addr uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xd0}, R: []byte{0x60}},
		{Addr: addr, W: []byte{0x88}, R: calib88},
		{Addr: addr, W: []byte{0xe1}, R: calibE1},
		{Addr: addr, W: []byte{0xf4, 0x6c, 0xf2, 0x03, 0xf5, 0xa8, 0xf4, 0x6f}},
	}
}

var normalOpts = bme280.Opts{Standby: time.Second, Filter: bmxx80.F4, Now: func() time.Time { return fixed }}

func TestReadNormalMode(t *testing.T) {
	ops := append(normalOps(0x76), i2ctest.IO{Addr: 0x76, W: []byte{0xf7}, R: frame})
	pb := &i2ctest.Playback{Ops: ops, DontPanic: true}
	dev, err := bme280.New("box", pb, 0x76, normalOpts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dev.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := sensors.Reading{Sensor: "box", Time: fixed, TemperatureC: 25.08, PressureKPa: 100.65325390625, HumidityPct: 33.1171}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("Read (-want +got):\n%s", diff)
	}
	if err := pb.Close(); err != nil {
		t.Error(err)
	}
	// The emulator measures on every read in normal mode.
	bus := sim.NewBME280(0x76, 10, 20, 90)
	dev, err = bme280.New("box", bus, 0x76, normalOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []float64{10, -5.5, 40.25} {
		if err := bus.SetTemperature(c); err != nil {
			t.Fatal(err)
		}
		r, err := dev.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(r.TemperatureC-c) > 0.01 {
			t.Errorf("Read = %v °C, want %v", r.TemperatureC, c)
		}
	}
	bus.PowerCycle()
	if _, err := dev.Read(t.Context()); !errors.Is(err, bme280.ErrNoMeasurement) {
		t.Fatalf("Read after a power cycle = %v, want ErrNoMeasurement", err)
	}
	if r, err := dev.Read(t.Context()); err != nil || math.Abs(r.TemperatureC-40.25) > 0.01 {
		t.Errorf("Read after reinitialisation = %+v, %v", r, err)
	}
}

func TestModeOpts(t *testing.T) {
	for _, o := range []bme280.Opts{
		{Standby: time.Second},
		{Filter: bmxx80.F2},
		{Standby: -time.Second, Filter: bmxx80.F2},
		{Standby: time.Second, Filter: 7},
	} {
		if _, err := bme280.New("box", sim.NewBME280(0x76, 20, 50, 100), 0x76, o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// FuzzBME280Frame feeds arbitrary data blocks through the real driver:
// Read must not panic and must return an error or finite, in-range values.
func FuzzBME280Frame(f *testing.F) {
	f.Add(frame)
	f.Add([]byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0})
	f.Add(make([]byte, 8))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x65, 0x5a})
	f.Add([]byte("LLAZ\xc0")) // 110.005 kPa: just outside the range
	f.Fuzz(func(t *testing.T, data []byte) {
		block := make([]byte, 8)
		copy(block, data)
		ops := append(normalOps(0x76), i2ctest.IO{Addr: 0x76, W: []byte{0xf7}, R: block})
		pb := &i2ctest.Playback{Ops: ops, DontPanic: true}
		dev, err := bme280.New("box", pb, 0x76, normalOpts)
		if err != nil {
			t.Fatal(err)
		}
		r, err := dev.Read(t.Context())
		if err != nil {
			return
		}
		for _, v := range []float64{r.TemperatureC, r.HumidityPct, r.PressureKPa} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("Read(%x) = %+v: not finite", block, r)
			}
		}
		const slack = 0.001 // the driver's rounding at the ends of the range
		if r.TemperatureC < -40-slack || r.TemperatureC > 85+slack || r.HumidityPct < 0 || r.HumidityPct > 100 || r.PressureKPa < 30-slack || r.PressureKPa > 110+slack {
			t.Fatalf("Read(%x) = %+v: outside the range without an error", block, r)
		}
	})
}

func BenchmarkBME280Read(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts bme280.Opts
	}{
		{"forced-1x", bme280.Opts{Oversampling: bmxx80.O1x}},
		{"forced-4x", bme280.Opts{}},
		{"normal", bme280.Opts{Standby: time.Second, Filter: bmxx80.F4}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bus := sim.NewBME280(0x76, 21.5, 40, 101.3)
			dev, err := bme280.New("box", bus, 0x76, bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := dev.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
