package sim

import "math"

// Bosch's integer compensation (BME280 datasheet rev 1.6, §4.2.3 and §8.2),
// the same arithmetic as periph's bmxx80, and its inverse by binary search.

// calibration holds the trimming parameters dig_T1..dig_H6.
type calibration struct {
	t1                             uint16
	t2, t3                         int16
	p1                             uint16
	p2, p3, p4, p5, p6, p7, p8, p9 int16
	h1                             uint8
	h2                             int16
	h3                             uint8
	h4, h5                         int16
	h6                             int8
}

// datasheetCalibration is the example from the BME280 datasheet (§8.1/8.2
// worked example: adc_T=519888 → 25.08 °C, adc_P=415148 → 100653.27 Pa),
// with humidity parameters taken from a real part.
var datasheetCalibration = calibration{
	t1: 27504, t2: 26435, t3: -1000,
	p1: 36477, p2: -10685, p3: 3024, p4: 2855, p5: 140, p6: -7, p7: 15500, p8: -14600, p9: 6000,
	h1: 75, h2: 366, h3: 0, h4: 309, h5: 0, h6: 30,
}

// block88 encodes registers 0x88..0xA1: T1..T3, P1..P9 (little endian),
// one unused byte, H1.
func (c calibration) block88() [26]byte {
	var b [26]byte
	le := func(i int, v uint16) { b[i], b[i+1] = byte(v), byte(v>>8) }
	le(0, c.t1)
	le(2, uint16(c.t2))
	le(4, uint16(c.t3))
	le(6, c.p1)
	for i, v := range []int16{c.p2, c.p3, c.p4, c.p5, c.p6, c.p7, c.p8, c.p9} {
		le(8+2*i, uint16(v))
	}
	b[25] = c.h1
	return b
}

// blockE1 encodes registers 0xE1..0xE7: H2 (LE), H3, H4 and H5 sharing the
// nibbles of 0xE5, H6.
func (c calibration) blockE1() [7]byte {
	return [7]byte{
		byte(c.h2), byte(uint16(c.h2) >> 8),
		c.h3,
		byte(c.h4 >> 4), byte(c.h4&0x0F) | byte(c.h5&0x0F)<<4,
		byte(c.h5 >> 4),
		byte(c.h6),
	}
}

// temp returns the temperature in 0.01 °C and t_fine.
func (c calibration) temp(raw int32) (int32, int32) {
	x := ((raw>>3 - int32(c.t1)<<1) * int32(c.t2)) >> 11
	y := ((((raw>>4 - int32(c.t1)) * (raw>>4 - int32(c.t1))) >> 12) * int32(c.t3)) >> 14
	tFine := x + y
	return (tFine*5 + 128) >> 8, tFine
}

// pressure returns the pressure in Pa as Q24.8 (1/256 Pa).
func (c calibration) pressure(raw, tFine int32) int64 {
	x := int64(tFine) - 128000
	y := x * x * int64(c.p6)
	y += (x * int64(c.p5)) << 17
	y += int64(c.p4) << 35
	x = (x*x*int64(c.p3))>>8 + ((x * int64(c.p2)) << 12)
	x = ((int64(1)<<47 + x) * int64(c.p1)) >> 33
	if x == 0 {
		return 0
	}
	p := ((((1048576 - int64(raw)) << 31) - y) * 3125) / x
	x = (int64(c.p9) * (p >> 13) * (p >> 13)) >> 25
	y = (int64(c.p8) * p) >> 19
	return ((p + x + y) >> 8) + (int64(c.p7) << 4)
}

// humidity returns the relative humidity as Q22.10 (1/1024 %RH), clamped
// to 0..100 %.
func (c calibration) humidity(raw, tFine int32) int32 {
	x := tFine - 76800
	x1 := raw<<14 - int32(c.h4)<<20 - int32(c.h5)*x
	x2 := (x1 + 16384) >> 15
	x3 := (x * int32(c.h6)) >> 10
	x4 := (x * int32(c.h3)) >> 11
	x5 := (x3 * (x4 + 32768)) >> 10
	x6 := ((x5+2097152)*int32(c.h2) + 8192) >> 14
	x = x2 * x6
	x = x - ((((x>>15)*(x>>15))>>7)*int32(c.h1))>>4
	x = min(max(x, 0), 419430400)
	return x >> 12
}

// closest finds the raw value in [0, hi] whose f is nearest to want, for a
// monotonic f (increasing or decreasing).
func closest(hi int32, want int64, f func(int32) int64) int32 {
	inc := f(hi) >= f(0)
	// Smallest raw with f(raw) on or past want, in f's direction.
	lo, top := int32(0), hi
	for lo < top {
		mid := lo + (top-lo)/2
		if v := f(mid); (inc && v >= want) || (!inc && v <= want) {
			top = mid
		} else {
			lo = mid + 1
		}
	}
	best := lo
	for _, r := range []int32{lo - 1, lo + 1} {
		if r >= 0 && r <= hi && abs(f(r)-want) < abs(f(best)-want) {
			best = r
		}
	}
	return best
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

const (
	maxRaw20 = 1<<20 - 1
	maxRaw16 = 1<<16 - 1
)

// rawFor returns the ADC values that compensate to the wanted temperature
// (°C), relative humidity (%) and pressure (kPa).
func (c calibration) rawFor(tempC, rh, kPa float64) (rawT, rawP, rawH int32) {
	wantT := int64(math.Round(tempC * 100))
	rawT = closest(maxRaw20, wantT, func(r int32) int64 { t, _ := c.temp(r); return int64(t) })
	_, tFine := c.temp(rawT)
	wantP := int64(math.Round(kPa * 1000 * 256))
	rawP = closest(maxRaw20, wantP, func(r int32) int64 { return c.pressure(r, tFine) })
	wantH := int64(math.Round(rh * 1024))
	rawH = closest(maxRaw16, wantH, func(r int32) int64 { return int64(c.humidity(r, tFine)) })
	return rawT, rawP, rawH
}
