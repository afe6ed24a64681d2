package sim

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The inverse must round-trip over the whole operating range.
func TestRawForRoundTrips(t *testing.T) {
	c := datasheetCalibration
	for tempC := -40.0; tempC <= 85; tempC += 0.37 {
		for rh := 0.0; rh <= 100; rh += 7.3 {
			for kPa := 30.0; kPa <= 110; kPa += 6.1 {
				rawT, rawP, rawH := c.rawFor(tempC, rh, kPa)
				centi, tFine := c.temp(rawT)
				gotT := float64(centi) / 100
				gotP := float64(c.pressure(rawP, tFine)) / 256 / 1000
				gotH := float64(c.humidity(rawH, tFine)) / 1024
				if math.Abs(gotT-tempC) > 0.005+1e-9 || math.Abs(gotP-kPa) > 0.0002 || math.Abs(gotH-rh) > 0.01 {
					t.Fatalf("rawFor(%v, %v, %v) = %d, %d, %d → %v °C, %v kPa, %v %%RH",
						tempC, rh, kPa, rawT, rawP, rawH, gotT, gotP, gotH)
				}
			}
		}
	}
}

// The datasheet's worked example, through the emulator's own compensation.
func TestCompensationDatasheetExample(t *testing.T) {
	c := datasheetCalibration
	centi, tFine := c.temp(519888)
	got := []int64{int64(centi), int64(tFine), c.pressure(415148, tFine)}
	want := []int64{2508, 128422, 25767233} // 25.08 °C; 25767233/256 = 100653.25 Pa
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("compensation (-want +got):\n%s", diff)
	}
}

// Decode the calibration blocks the way a driver does (datasheet table 16).
func TestCalibrationBlocksRoundTrip(t *testing.T) {
	c := datasheetCalibration
	b, h := c.block88(), c.blockE1()
	u16 := func(i int) uint16 { return uint16(b[i]) | uint16(b[i+1])<<8 }
	s16 := func(i int) int16 { return int16(u16(i)) }
	got := calibration{
		t1: u16(0), t2: s16(2), t3: s16(4),
		p1: u16(6), p2: s16(8), p3: s16(10), p4: s16(12), p5: s16(14), p6: s16(16), p7: s16(18), p8: s16(20), p9: s16(22),
		h1: b[25],
		h2: int16(h[0]) | int16(h[1])<<8,
		h3: h[2],
		h4: int16(h[3])<<4 | int16(h[4])&0x0F,
		h5: int16(h[4])>>4 | int16(h[5])<<4,
		h6: int8(h[6]),
	}
	if diff := cmp.Diff(c, got, cmp.AllowUnexported(calibration{})); diff != "" {
		t.Errorf("decoded calibration (-want +got):\n%s", diff)
	}
}

func TestClosest(t *testing.T) {
	square := func(r int32) int64 { return int64(r) * int64(r) }
	neg := func(r int32) int64 { return -3 * int64(r) }
	tests := []struct {
		name string
		hi   int32
		want int64
		f    func(int32) int64
		out  int32
	}{
		{"exact", 100, 49, square, 7},
		{"between, nearer below", 100, 50, square, 7},
		{"between, nearer above", 100, 62, square, 8},
		{"below range", 100, -5, square, 0},
		{"above range", 10, 1000, square, 10},
		{"decreasing", 100, -31, neg, 10},
		{"decreasing above", 100, 5, neg, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := closest(tt.hi, tt.want, tt.f); got != tt.out {
				t.Errorf("closest(%d, %d) = %d, want %d", tt.hi, tt.want, got, tt.out)
			}
		})
	}
}
