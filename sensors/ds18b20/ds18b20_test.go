package ds18b20

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
	"github.com/iotagent/iotagent/sensors/sim"
)

const id = "28-0123456789ab"

// The datasheet's temperature/data relationship (DS18B20 table 1) and the
// CRC of a scratchpad as the kernel prints it.
func TestScratchpad(t *testing.T) {
	for _, tt := range []struct {
		c        float64
		lsb, msb byte
	}{
		{125, 0xd0, 0x07}, {85, 0x50, 0x05}, {25.0625, 0x91, 0x01}, {10.125, 0xa2, 0x00}, {0.5, 0x08, 0x00},
		{0, 0, 0}, {-0.5, 0xf8, 0xff}, {-10.125, 0x5e, 0xff}, {-25.0625, 0x6f, 0xfe}, {-55, 0x90, 0xfc},
	} {
		s := sim.DS18B20Scratchpad(tt.c)
		if s[0] != tt.lsb || s[1] != tt.msb {
			t.Errorf("%v °C: scratchpad % x, want %02x %02x", tt.c, s[:2], tt.lsb, tt.msb)
		}
	}
	if crc := sim.W1CRC8([]byte{0x72, 0x01, 0x4b, 0x46, 0x7f, 0xff, 0x0e, 0x10}); crc != 0x57 {
		t.Errorf("CRC = %#02x, want 0x57", crc)
	}
	// Maxim application note 27's ROM example.
	if crc := sim.W1CRC8([]byte{0x02, 0x1c, 0xb8, 0x01, 0x00, 0x00, 0x00}); crc != 0xa2 {
		t.Errorf("CRC = %#02x, want 0xa2", crc)
	}
}

func TestParseW1Slave(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		milli    int
		err      error
	}{
		{"good", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 23125, nil},
		{"no final newline", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125", 23125, nil},
		{"negative", sim.W1Slave(sim.DS18B20Scratchpad(-10.125), true, -10125), -10125, nil},
		{"crc NO", "72 01 4b 46 7f ff 0e 10 00 : crc=00 NO\n72 01 4b 46 7f ff 0e 10 00 t=23125\n", 0, sensors.ErrCorrupt},
		{"crc YES but wrong", "72 01 4b 46 7f ff 0e 10 58 : crc=58 YES\n72 01 4b 46 7f ff 0e 10 58 t=23125\n", 0, sensors.ErrCorrupt},
		{"zeros", "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", 0, sensors.ErrCorrupt},
		{"power-on 85", sim.W1Slave(sim.DS18B20Scratchpad(85), true, 85000), 0, sensors.ErrImplausible},
		{"out of range", sim.W1Slave(sim.DS18B20Scratchpad(125), true, 126000), 0, sensors.ErrImplausible},
		{"one line", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", 0, sensors.ErrCorrupt},
		{"lines differ", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n73 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, sensors.ErrCorrupt},
		{"not hex", "7g 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n7g 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, sensors.ErrCorrupt},
		{"bad t", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=2x\n", 0, sensors.ErrCorrupt},
		{"empty", "", 0, sensors.ErrCorrupt},
	} {
		t.Run(tt.name, func(t *testing.T) {
			milli, err := ParseW1Slave([]byte(tt.in))
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) || milli != tt.milli {
				t.Errorf("ParseW1Slave = %d, %v; want %d, %v", milli, err, tt.milli, tt.err)
			}
		})
	}
}

func TestParseTemperature(t *testing.T) {
	for _, tt := range []struct {
		in    string
		milli int
		err   error
	}{
		{"23125\n", 23125, nil}, {"-55000\n", -55000, nil}, {"85000\n", 0, sensors.ErrImplausible},
		{"125001\n", 0, sensors.ErrImplausible}, {"", 0, sensors.ErrCorrupt}, {" 1\n", 0, sensors.ErrCorrupt}, {"1.5\n", 0, sensors.ErrCorrupt},
	} {
		milli, err := ParseTemperature([]byte(tt.in))
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) || milli != tt.milli {
			t.Errorf("ParseTemperature(%q) = %d, %v; want %d, %v", tt.in, milli, err, tt.milli, tt.err)
		}
	}
}

// Readings through the registry, the driver and the simulated sysfs files.
func TestRead(t *testing.T) {
	s, ctl := drvtest.Open(t, sensors.Part{Name: "fridge", Type: Type, Device: id})
	for _, c := range []float64{4, -55, -10.125, 0, 25.0625, 84.9375, 125} {
		if err := ctl.Set("temperature_c", c); err != nil {
			t.Fatal(err)
		}
		// The kernel's t= truncates to whole m°C.
		if got := drvtest.Read(t, s); got["temperature_c"] != math.Trunc(c*1000)/1000 || len(got) != 1 {
			t.Errorf("set %v, read %v", c, got)
		}
	}
	// 85.000 exactly is the power-on value: a real 85 °C reads as an error.
	if err := ctl.Set("temperature_c", 85); err != nil {
		t.Fatal(err)
	}
	_, err := s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrImplausible, `part "fridge"`, id, "did not convert", "dtoverlay=w1-gpio")
}

func simProbe(t *testing.T) (*sim.Files, *sim.DS18B20, sensors.Sampler) {
	files, err := sim.NewFiles()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = files.Close() })
	probe, err := files.AddDS18B20(id, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := files.AddDS18B20("28-00000000beef", 5); err != nil {
		t.Fatal(err)
	}
	d, _ := sensors.Lookup(Type)
	s, err := d.Open(t.Context(), sensors.Part{Name: "fridge", Type: Type, Device: id}, sensors.Host{Root: files.Root()})
	if err != nil {
		t.Fatal(err)
	}
	return files, probe, s
}

func TestFaults(t *testing.T) {
	for _, tt := range []struct {
		fault sim.W1Fault
		err   error
		says  string
	}{
		{sim.W1CRC, sensors.ErrCorrupt, "crc="},
		{sim.W1PowerOnReset, sensors.ErrImplausible, "85.000"},
		{sim.W1Zeros, sensors.ErrCorrupt, "all zeros"},
	} {
		_, probe, s := simProbe(t)
		if err := probe.SetFault(tt.fault); err != nil {
			t.Fatal(err)
		}
		_, err := s.Read(t.Context())
		drvtest.WantErr(t, err, tt.err, `part "fridge"`, id, tt.says, "4.7 kΩ pull-up")
		if err := probe.SetFault(sim.W1OK); err != nil {
			t.Fatal(err)
		}
		if v := drvtest.Read(t, s); v["temperature_c"] != 4 {
			t.Errorf("read after the fault cleared = %v", v)
		}
	}
}

// A kernel with only the temperature file.
func TestTemperatureFile(t *testing.T) {
	files, _, s := simProbe(t)
	if err := os.Remove(filepath.Join(files.Root(), sim.W1Devices, id, "w1_slave")); err != nil {
		t.Fatal(err)
	}
	if v := drvtest.Read(t, s); v["temperature_c"] != 4 {
		t.Errorf("read through temperature = %v", v)
	}
}

func TestAbsent(t *testing.T) {
	_, probe, s := simProbe(t)
	if err := probe.Remove(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrNoDevice, `part "fridge"`, id, "not found", "28-00000000beef", "dtoverlay=w1-gpio", "pull-up")

	// Open: a probe that is not there, and no 1-Wire at all.
	files, _, _ := simProbe(t)
	err = drvtest.OpenErr(t, sensors.Part{Name: "fridge", Type: Type, Device: "28-ffffffffffff"}, sensors.Host{Root: files.Root()})
	drvtest.WantErr(t, err, sensors.ErrNoDevice, "28-ffffffffffff", "probes on the bus: 28-00000000beef, "+id)
	err = drvtest.OpenErr(t, sensors.Part{Name: "fridge", Type: Type, Device: id}, sensors.Host{Root: t.TempDir()})
	drvtest.WantErr(t, err, sensors.ErrNoDevice, "1-Wire is not on", "dtoverlay=w1-gpio")
}

func TestBadConfig(t *testing.T) {
	files, _, _ := simProbe(t)
	h := sensors.Host{Root: files.Root()}
	for _, p := range []sensors.Part{
		{Name: "fridge", Type: Type, Device: "../../../etc"},
		{Name: "fridge", Type: Type, Device: ""},
		{Name: "fridge", Type: Type, Device: "28-0123456789AB"},
		{Name: "fridge", Type: Type, Device: "29-0123456789ab"},
		{Name: "fridge", Type: Type, Device: id, Bus: "1"},
		{Name: "fridge", Type: Type, Device: id, Address: 0x28},
		{Name: "fridge", Type: Type, Device: id, Options: json.RawMessage(`{"resolution": 12}`)},
	} {
		err := drvtest.OpenErr(t, p, h)
		drvtest.WantErr(t, err, sensors.ErrOptions, `part "fridge"`)
	}
	if _, _, err := Sim(sensors.Part{Name: "fridge", Type: Type, Device: "x"}); !errors.Is(err, sensors.ErrOptions) {
		t.Errorf("Sim with a bad id = %v", err)
	}
}

func TestSimRefuses(t *testing.T) {
	_, ctl := drvtest.Open(t, sensors.Part{Name: "fridge", Type: Type, Device: id})
	for _, v := range []float64{-55.1, 125.1} {
		if err := ctl.Set("temperature_c", v); !errors.Is(err, sim.ErrOutOfRange) {
			t.Errorf("Set(%v) = %v, want ErrOutOfRange", v, err)
		}
	}
}

func FuzzParseW1Slave(f *testing.F) {
	f.Add([]byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"))
	f.Add([]byte(sim.W1Slave(sim.DS18B20Scratchpad(85), true, 85000)))
	f.Add([]byte("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		milli, err := ParseW1Slave(b)
		if err != nil {
			if !errors.Is(err, sensors.ErrCorrupt) && !errors.Is(err, sensors.ErrImplausible) {
				t.Fatalf("error %v is neither ErrCorrupt nor ErrImplausible", err)
			}
			return
		}
		if milli < -55000 || milli > 125000 {
			t.Fatalf("accepted %d m°C", milli)
		}
		if !strings.Contains(string(b), "YES") {
			t.Fatalf("accepted %q without a YES", b)
		}
	})
}

func FuzzParseTemperature(f *testing.F) {
	f.Add([]byte("23125\n"))
	f.Add([]byte("-1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		milli, err := ParseTemperature(b)
		if err == nil && (milli < -55000 || milli > 125000 || milli == 85000) {
			t.Fatalf("accepted %d m°C", milli)
		}
	})
}
