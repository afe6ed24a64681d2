package cputemp

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
	"github.com/iotagent/iotagent/sensors/sim"
)

func TestRead(t *testing.T) {
	for _, dev := range []string{"", "thermal_zone1"} {
		s, ctl := drvtest.Open(t, sensors.Part{Name: "cpu", Type: Type, Device: dev})
		for _, c := range []float64{45, 48.312, -40, 85, 125, 0.001} {
			if err := ctl.Set("temperature_c", c); err != nil {
				t.Fatal(err)
			}
			if got := drvtest.Read(t, s); got["temperature_c"] != c || len(got) != 1 {
				t.Errorf("set %v, read %v", c, got)
			}
		}
	}
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
		err  error
	}{
		{"48312\n", 48.312, nil}, {"-5000", -5, nil}, {"126000\n", 0, sensors.ErrImplausible}, {"-41000\n", 0, sensors.ErrImplausible},
		{"", 0, sensors.ErrCorrupt}, {"48.3\n", 0, sensors.ErrCorrupt}, {"hot\n", 0, sensors.ErrCorrupt}, {"48312\n\n", 0, sensors.ErrCorrupt},
	} {
		got, err := Parse([]byte(tt.in))
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestErrors(t *testing.T) {
	files, err := sim.NewFiles()
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	z, err := files.AddThermalZone(0, "cpu-thermal", 50)
	if err != nil {
		t.Fatal(err)
	}
	h := sensors.Host{Root: files.Root()}
	for _, p := range []sensors.Part{
		{Name: "cpu", Type: Type, Device: "../../etc/passwd"},
		{Name: "cpu", Type: Type, Device: "thermal_zone"},
		{Name: "cpu", Type: Type, Bus: "1"},
		{Name: "cpu", Type: Type, Options: json.RawMessage(`{"zone": 1}`)},
	} {
		drvtest.WantErr(t, drvtest.OpenErr(t, p, h), sensors.ErrOptions, `part "cpu"`)
	}
	err = drvtest.OpenErr(t, sensors.Part{Name: "cpu", Type: Type, Device: "thermal_zone3"}, h)
	drvtest.WantErr(t, err, sensors.ErrNoDevice, `part "cpu"`, "thermal_zone3", "not a Raspberry Pi")

	d, _ := sensors.Lookup(Type)
	s, err := d.Open(t.Context(), sensors.Part{Name: "cpu", Type: Type}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := z.WriteRaw("garbage\n"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrCorrupt, `part "cpu"`, `"garbage"`)
	if err := z.Set("temperature_c", 125.5); !errors.Is(err, sim.ErrOutOfRange) {
		t.Errorf("Set(125.5) = %v, want ErrOutOfRange", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("48312\n"))
	f.Add([]byte("-1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err == nil && (c < -40 || c > 125) {
			t.Fatalf("Parse(%q) = %v", b, c)
		}
	})
}

// BenchmarkRead is one read of the CPU temperature (open, read and parse
// the zone's temp file), the cheapest real read a part has: the bench's
// idle-1s step puts the agent's CPU per read beside it.
func BenchmarkRead(b *testing.B) {
	p := sensors.Part{Name: "cpu", Type: Type, Sim: true}
	h, ctl, err := Sim(p)
	if err != nil {
		b.Fatal(err)
	}
	defer ctl.Close()
	s, err := Open(b.Context(), p, h)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Read(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
