package sim_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/sensors/sim"
)

func read(t *testing.T, b *sim.BME280Bus, reg byte, n int) []byte {
	t.Helper()
	r := make([]byte, n)
	if err := b.Tx(0x76, []byte{reg}, r); err != nil {
		t.Fatalf("read %#x: %v", reg, err)
	}
	return r
}

func write(t *testing.T, b *sim.BME280Bus, pairs ...byte) {
	t.Helper()
	if err := b.Tx(0x76, pairs, nil); err != nil {
		t.Fatalf("write % x: %v", pairs, err)
	}
}

func TestBME280BusRegisters(t *testing.T) {
	b := sim.NewBME280(0x76, 25.08, 50, 100.653)
	if diff := cmp.Diff([]byte{0x60}, read(t, b, 0xd0, 1)); diff != "" {
		t.Errorf("chip id (-want +got):\n%s", diff)
	}
	// Power-on data registers: "skipped" values.
	if diff := cmp.Diff([]byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0}, read(t, b, 0xf7, 8)); diff != "" {
		t.Errorf("data at power-on (-want +got):\n%s", diff)
	}
	// bmxx80's configuration, then a forced measurement.
	write(t, b, 0xf4, 0x6c, 0xf2, 0x03, 0xf5, 0xa0, 0xf4, 0x6c)
	if diff := cmp.Diff([]byte{0x03, 0x00, 0x6c, 0xa0}, read(t, b, 0xf2, 4)); diff != "" {
		t.Errorf("ctrl_hum, status, ctrl_meas, config (-want +got):\n%s", diff)
	}
	write(t, b, 0xf4, 0x6d)
	if got := read(t, b, 0xf3, 1)[0]; got&0x08 == 0 {
		t.Errorf("status right after forced mode = %#x, want measuring bit", got)
	}
	if got := read(t, b, 0xf3, 1)[0]; got != 0 {
		t.Errorf("status later = %#x, want idle", got)
	}
	if got := read(t, b, 0xf4, 1)[0]; got != 0x6c {
		t.Errorf("ctrl_meas after the measurement = %#x, want back to sleep 0x6c", got)
	}
	// 25.08 °C is the datasheet's adc_T=519888; one 0.01 °C step is about
	// 32 counts.
	data := read(t, b, 0xf7, 8)
	if rawT := int(data[3])<<12 | int(data[4])<<4 | int(data[5])>>4; rawT < 519888-32 || rawT > 519888+32 {
		t.Errorf("adc_T = %d, want about 519888", rawT)
	}
	// Without a write, a read continues from the pointer set last.
	r := make([]byte, 2)
	if err := b.Tx(0x76, nil, r); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(data[:2], r); diff != "" {
		t.Errorf("pointer read (-want +got):\n%s", diff)
	}
	// Read-only registers ignore writes.
	write(t, b, 0xd0, 0x11, 0x88, 0x00)
	if got := read(t, b, 0xd0, 1)[0]; got != 0x60 {
		t.Errorf("chip id after a write = %#x", got)
	}
	// Soft reset.
	write(t, b, 0xe0, 0xb6)
	if diff := cmp.Diff([]byte{0x00, 0x00, 0x00, 0x00}, read(t, b, 0xf2, 4)); diff != "" {
		t.Errorf("control registers after reset (-want +got):\n%s", diff)
	}
}

func TestBME280BusSkippedChannels(t *testing.T) {
	b := sim.NewBME280(0x76, 20, 50, 100)
	// Humidity oversampling 0, temperature 1x, pressure skipped, forced.
	write(t, b, 0xf2, 0x00, 0xf4, 0x21)
	data := read(t, b, 0xf7, 8)
	if diff := cmp.Diff([]byte{0x80, 0x00, 0x00}, data[:3]); diff != "" {
		t.Errorf("skipped pressure (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]byte{0x80, 0x00}, data[6:]); diff != "" {
		t.Errorf("skipped humidity (-want +got):\n%s", diff)
	}
	if data[3] == 0x80 && data[4] == 0 && data[5] == 0 {
		t.Error("temperature was skipped although oversampled")
	}
	// ctrl_hum only takes effect with the next ctrl_meas write.
	write(t, b, 0xf2, 0x01)
	if got := read(t, b, 0xfd, 2); got[0] != 0x80 || got[1] != 0 {
		t.Errorf("humidity before ctrl_meas = % x, want still skipped", got)
	}
	write(t, b, 0xf4, 0x25)
	if got := read(t, b, 0xfd, 2); got[0] == 0x80 && got[1] == 0 {
		t.Errorf("humidity after ctrl_meas = % x, want measured", got)
	}
}

func TestBME280BusNormalModeMeasuresOnRead(t *testing.T) {
	b := sim.NewBME280(0x76, 20, 50, 100)
	write(t, b, 0xf2, 0x01, 0xf4, 0x27) // normal mode
	before := read(t, b, 0xf7, 8)
	if err := b.SetTemperature(30); err != nil {
		t.Fatal(err)
	}
	if after := read(t, b, 0xf7, 8); cmp.Equal(before, after) {
		t.Errorf("data unchanged after SetTemperature in normal mode: % x", after)
	}
}

func TestBME280BusErrors(t *testing.T) {
	b := sim.NewBME280(0x77, 20, 50, 100)
	if err := b.Tx(0x76, []byte{0xd0}, make([]byte, 1)); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("Tx to 0x76: got %v, want ErrNACK", err)
	}
	boom := errors.New("boom")
	b.SetErr(boom)
	if err := b.Tx(0x77, []byte{0xd0}, make([]byte, 1)); !errors.Is(err, boom) {
		t.Errorf("Tx with SetErr: got %v, want %v", err, boom)
	}
	b.SetErr(nil)
	if err := b.Tx(0x77, []byte{0xd0}, make([]byte, 1)); err != nil {
		t.Errorf("Tx after SetErr(nil): %v", err)
	}
	tests := []struct {
		name string
		set  func(float64) error
		v    float64
	}{
		{"temperature high", b.SetTemperature, 85.5},
		{"temperature low", b.SetTemperature, -41},
		{"temperature NaN", b.SetTemperature, nan()},
		{"humidity", b.SetHumidity, 101},
		{"pressure low", b.SetPressure, 29},
		{"pressure inf", b.SetPressure, inf()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.set(tt.v); !errors.Is(err, sim.ErrOutOfRange) {
				t.Errorf("set(%v): got %v, want ErrOutOfRange", tt.v, err)
			}
		})
	}
	if got := b.Transactions(); got != 1 {
		t.Errorf("Transactions() = %d, want 1 (failed ones do not reach the device)", got)
	}
}

func TestNewBME280Clamps(t *testing.T) {
	hot := sim.NewBME280(0x76, 500, 50, 100)
	ref := sim.NewBME280(0x76, 85, 50, 100)
	for _, b := range []*sim.BME280Bus{hot, ref} {
		write(t, b, 0xf2, 0x01, 0xf4, 0x25)
	}
	if diff := cmp.Diff(read(t, ref, 0xf7, 8), read(t, hot, 0xf7, 8)); diff != "" {
		t.Errorf("500 °C vs 85 °C (-want +got):\n%s", diff)
	}
	// NaN does not panic and gives the low end.
	_ = sim.NewBME280(0x76, nan(), nan(), nan())
}

// FuzzBME280BusTx sends arbitrary transactions to the emulator: no panic,
// and the chip id and calibration stay readable.
func FuzzBME280BusTx(f *testing.F) {
	f.Add([]byte{0xf4, 0x6c, 0xf2, 0x03, 0xf5, 0xa0, 0xf4, 0x6c}, uint8(0))
	f.Add([]byte{0xf7}, uint8(8))
	f.Add([]byte{0xe0, 0xb6, 0xff}, uint8(255))
	f.Add([]byte{}, uint8(3))
	f.Fuzz(func(t *testing.T, w []byte, n uint8) {
		b := sim.NewBME280(0x76, 20, 50, 100)
		if err := b.Tx(0x76, w, make([]byte, n)); err != nil {
			t.Fatalf("Tx(% x, %d): %v", w, n, err)
		}
		if got := read(t, b, 0xd0, 1)[0]; got != 0x60 {
			t.Fatalf("chip id after Tx(% x) = %#x", w, got)
		}
		if got := read(t, b, 0x88, 2); got[0] != 0x70 || got[1] != 0x6b {
			t.Fatalf("dig_T1 after Tx(% x) = % x", w, got)
		}
	})
}
