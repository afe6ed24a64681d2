package sim

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// BME280 register addresses.
const (
	regCalib00  = 0x88 // 26 bytes: T1..P9, unused, H1
	regChipID   = 0xD0
	regReset    = 0xE0
	regCalib26  = 0xE1 // 7 bytes: H2..H6
	regCtrlHum  = 0xF2
	regStatus   = 0xF3
	regCtrlMeas = 0xF4
	regConfig   = 0xF5
	regData     = 0xF7 // press[3] temp[3] hum[2]

	chipIDBME280 = 0x60
	resetCommand = 0xB6
	statusBusy   = 0x08
)

// ErrNACK is returned for a transaction to an address where no simulated
// device answers (Linux reports this as ENXIO or EREMOTEIO).
var ErrNACK = errors.New("sim i2c: no device acknowledged the address")

// ErrOutOfRange is returned by the simulated parts' setters for a value outside
// the sensor's operating range or not a finite number.
var ErrOutOfRange = errors.New("sim: value outside the part's range")

// Operating range (datasheet §1).
const (
	minTempC, maxTempC = -40.0, 85.0
	minRH, maxRH       = 0.0, 100.0
	minKPa, maxKPa     = 30.0, 110.0
)

// BME280Bus is an i2c.Bus with one emulated BME280 on it. It models the
// register map the bmxx80 driver uses: chip id 0x60, the calibration blocks
// at 0x88 and 0xE1 (the datasheet example calibration), ctrl_hum, status,
// ctrl_meas, config, soft reset, and the data block at 0xF7. Writing
// forced mode to ctrl_meas makes a measurement: the data registers then
// hold the ADC values that Bosch's compensation turns back into the values
// set on the bus, as closely as one ADC count allows (a driver reads the
// temperature back exactly to its 0.01 °C resolution, the pressure within
// about 0.1 Pa and the humidity within 0.01 %RH).
// In normal mode every read of the data block measures afresh. A channel
// whose oversampling is "skipped" reads 0x80000 (0x8000 for humidity), as
// on the chip. It is safe for concurrent use.
type BME280Bus struct {
	addr   uint16
	cal    calibration
	chipID byte
	noHum  bool // a BMP280: no humidity registers

	mu    sync.Mutex
	regs  [256]byte
	ptr   byte // register pointer for reads
	busy  int  // status reads that still report "measuring"
	hum   byte // ctrl_hum as latched by the last ctrl_meas write
	tempC float64
	rh    float64
	kPa   float64
	rawT  int32
	rawP  int32
	rawH  int32
	err   error
	txs   int
}

var _ i2c.BusCloser = (*BME280Bus)(nil)

// NewBME280 returns a bus with a BME280 at addr (normally 0x76 or 0x77)
// reporting the given values. Values outside the operating range
// (-40..85 °C, 0..100 %RH, 30..110 kPa) are clamped; NaN becomes the low end.
func NewBME280(addr uint16, tempC, humidityPct, pressureKPa float64) *BME280Bus {
	b := &BME280Bus{addr: addr, cal: datasheetCalibration, chipID: chipIDBME280}
	b.tempC = clamp(tempC, minTempC, maxTempC)
	b.rh = clamp(humidityPct, minRH, maxRH)
	b.kPa = clamp(pressureKPa, minKPa, maxKPa)
	b.powerOnLocked()
	b.updateRawLocked()
	return b
}

// chipIDBMP280 is a BMP280's chip id.
const chipIDBMP280 = 0x58

// NewBMP280 returns a bus with a Bosch BMP280 at addr: the BME280's
// temperature and pressure, with chip id 0x58 and without the humidity
// registers (ctrl_hum, the calibration at 0xE1 and the humidity data read
// 0; SetHumidity fails). Values outside the range are clamped as in
// NewBME280.
func NewBMP280(addr uint16, tempC, pressureKPa float64) *BME280Bus {
	b := &BME280Bus{addr: addr, cal: datasheetCalibration, chipID: chipIDBMP280, noHum: true}
	b.tempC = clamp(tempC, minTempC, maxTempC)
	b.kPa = clamp(pressureKPa, minKPa, maxKPa)
	b.powerOnLocked()
	b.updateRawLocked()
	return b
}

func clamp(v, lo, hi float64) float64 {
	if math.IsNaN(v) {
		return lo
	}
	return min(max(v, lo), hi)
}

func (b *BME280Bus) powerOnLocked() {
	b.regs = [256]byte{}
	b.regs[regChipID] = b.chipID
	c88 := b.cal.block88()
	copy(b.regs[regCalib00:], c88[:])
	// Data registers power up as 0x80000 / 0x8000.
	copy(b.regs[regData:], []byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0})
	if b.noHum {
		b.regs[regCalib00+25] = 0 // 0xA1 (dig_H1) is not on a BMP280
		b.regs[regData+6], b.regs[regData+7] = 0, 0
	} else {
		cE1 := b.cal.blockE1()
		copy(b.regs[regCalib26:], cE1[:])
	}
	b.busy = 0
	b.hum = 0
}

func (b *BME280Bus) updateRawLocked() {
	b.rawT, b.rawP, b.rawH = b.cal.rawFor(b.tempC, b.rh, b.kPa)
}

func (b *BME280Bus) set(v, lo, hi float64, what string, dst *float64) error {
	if math.IsNaN(v) || v < lo || v > hi {
		return fmt.Errorf("set %s to %v (want %v..%v): %w", what, v, lo, hi, ErrOutOfRange)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	*dst = v
	b.updateRawLocked()
	return nil
}

// SetTemperature changes the temperature the next measurement returns.
func (b *BME280Bus) SetTemperature(c float64) error {
	return b.set(c, minTempC, maxTempC, "temperature °C", &b.tempC)
}

// SetHumidity changes the relative humidity (%) the next measurement returns.
func (b *BME280Bus) SetHumidity(pct float64) error {
	if b.noHum {
		return fmt.Errorf("set humidity on a BMP280: it has no humidity sensor: %w", ErrOutOfRange)
	}
	return b.set(pct, minRH, maxRH, "humidity %RH", &b.rh)
}

// SetPressure changes the pressure (kPa) the next measurement returns.
func (b *BME280Bus) SetPressure(kPa float64) error {
	return b.set(kPa, minKPa, maxKPa, "pressure kPa", &b.kPa)
}

// Set implements sensors.SimControl: "temperature_c", "humidity_pct"
// (not on a BMP280) or "pressure_kpa".
func (b *BME280Bus) Set(name string, v float64) error {
	switch name {
	case "temperature_c":
		return b.SetTemperature(v)
	case "humidity_pct":
		return b.SetHumidity(v)
	case "pressure_kpa":
		return b.SetPressure(v)
	}
	if b.noHum {
		return fmt.Errorf("sim bmp280: no reading %q (it has temperature_c, pressure_kpa)", name)
	}
	return fmt.Errorf("sim bme280: no reading %q (it has temperature_c, humidity_pct, pressure_kpa)", name)
}

// SetErr makes every transaction fail with err (a disconnected sensor) until
// SetErr(nil).
func (b *BME280Bus) SetErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

// PowerCycle resets the chip as a brown-out would: registers return to
// their power-on values, so the driver must initialise it again.
func (b *BME280Bus) PowerCycle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.powerOnLocked()
}

// Transactions returns how many transactions reached the device.
func (b *BME280Bus) Transactions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.txs
}

// String implements i2c.Bus.
func (b *BME280Bus) String() string {
	if b.noHum {
		return fmt.Sprintf("sim-i2c(bmp280@%#x)", b.addr)
	}
	return fmt.Sprintf("sim-i2c(bme280@%#x)", b.addr)
}

// SetSpeed implements i2c.Bus; the speed is ignored.
func (b *BME280Bus) SetSpeed(physic.Frequency) error { return nil }

// Close implements i2c.BusCloser; it does nothing.
func (b *BME280Bus) Close() error { return nil }

// Tx implements i2c.Bus with the BME280's I²C protocol: the write is a
// sequence of (register, value) pairs, and a trailing single byte sets the
// register pointer; the read then returns consecutive registers from the
// pointer (auto-increment).
func (b *BME280Bus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if addr != b.addr {
		return fmt.Errorf("tx to %#x: %w", addr, ErrNACK)
	}
	b.txs++
	for len(w) >= 2 {
		b.writeLocked(w[0], w[1])
		w = w[2:]
	}
	if len(w) == 1 {
		b.ptr = w[0]
	}
	if len(r) == 0 {
		return nil
	}
	if b.ptr == regData && b.regs[regCtrlMeas]&3 == 3 {
		b.measureLocked() // normal mode: always fresh
	}
	for i := range r {
		reg := b.ptr + byte(i)
		r[i] = b.regs[reg]
		if reg == regStatus && b.busy > 0 {
			r[i] |= statusBusy
			b.busy--
		}
	}
	return nil
}

func (b *BME280Bus) writeLocked(reg, v byte) {
	switch reg {
	case regReset:
		if v == resetCommand {
			b.powerOnLocked()
		}
	case regCtrlHum:
		if !b.noHum {
			b.regs[reg] = v & 0x07
		}
	case regConfig:
		b.regs[reg] = v &^ 0x02
	case regCtrlMeas:
		b.regs[reg] = v
		// ctrl_hum takes effect on a write to ctrl_meas.
		b.hum = b.regs[regCtrlHum]
		if mode := v & 3; mode == 1 || mode == 2 {
			b.measureLocked()
			b.busy = 1 // the driver polls status until the measurement ends
			b.regs[reg] = v &^ 3
		}
	default:
		// Read-only or reserved registers ignore writes, as on the chip.
	}
}

func (b *BME280Bus) measureLocked() {
	meas := b.regs[regCtrlMeas]
	t, p, h := b.rawT, b.rawP, b.rawH
	if meas>>5 == 0 {
		t = 0x80000
	}
	if (meas>>2)&7 == 0 {
		p = 0x80000
	}
	if b.hum&7 == 0 {
		h = 0x8000
	}
	d := b.regs[regData : regData+8]
	d[0], d[1], d[2] = byte(p>>12), byte(p>>4), byte(p<<4)
	d[3], d[4], d[5] = byte(t>>12), byte(t>>4), byte(t<<4)
	if !b.noHum {
		d[6], d[7] = byte(h>>8), byte(h)
	}
}

// Device returns the chip as a Device, to attach to an I2CBus (at any
// address; it answers there).
func (b *BME280Bus) Device() Device { return boschDevice{b} }

type boschDevice struct{ b *BME280Bus }

func (d boschDevice) Tx(w, r []byte) error { return d.b.Tx(d.b.addr, w, r) }
