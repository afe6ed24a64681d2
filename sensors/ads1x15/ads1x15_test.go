package ads1x15

import (
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
	"github.com/iotagent/iotagent/sensors/sim"
)

// The output codes of the datasheets' "Output Code Versus Input Signal"
// tables (ADS1115 table 3, ADS1015 table 3), at ±4.096 V.
func TestCodes(t *testing.T) {
	const fs = 4.096
	for _, tt := range []struct {
		volts float64
		bits  int
		code  uint16
	}{
		{fs, 16, 0x7fff}, {fs * 32767 / 32768, 16, 0x7fff}, {fs / 32768, 16, 0x0001}, {0, 16, 0},
		{-fs / 32768, 16, 0xffff}, {-fs, 16, 0x8000}, {-2 * fs, 16, 0x8000},
		{fs, 12, 0x7ff0}, {fs / 2048, 12, 0x0010}, {0, 12, 0}, {-fs / 2048, 12, 0xfff0}, {-fs, 12, 0x8000},
	} {
		if got := sim.ADSCode(tt.volts, fs, tt.bits); got != tt.code {
			t.Errorf("ADSCode(%v V, %d bits) = %#04x, want %#04x", tt.volts, tt.bits, got, tt.code)
		}
	}
}

const soil = `{"channels": [{"input": "0", "name": "soil_pct", "scale": -62.5, "offset": 175}]}`

// Readings through the registry, periph's driver (gain, mux and data rate
// in the config register) and the emulated converter.
func TestRead(t *testing.T) {
	for _, tt := range []struct {
		name    string
		opts    string
		set     map[string]float64
		want    map[string]float64
		epsilon float64
	}{
		{"volts", `{"channels": [{"input": "0"}, {"input": "3"}]}`, map[string]float64{"ain0_v": 1.65, "ain3_v": 3.3},
			map[string]float64{"ain0_v": 1.65, "ain3_v": 3.3}, 0.000125},
		{"soil moisture: 2.0 V is 50 %", soil, map[string]float64{"ain0_v": 2.0},
			map[string]float64{"soil_pct": 50}, 0.01},
		{"soil moisture set as a reading", soil, map[string]float64{"soil_pct": 80},
			map[string]float64{"soil_pct": 80}, 0.01},
		{"differential", `{"channels": [{"input": "0-1", "full_scale_v": 0.256}]}`, map[string]float64{"ain1_v": 1.0, "ain0_v": 1.1},
			map[string]float64{"ain0_1_v": 0.1}, 0.0000079},
		{"negative differential", `{"channels": [{"input": "2-3", "name": "shunt_v", "full_scale_v": 0.5}]}`, map[string]float64{"ain2_v": 1.0, "ain3_v": 1.2},
			map[string]float64{"shunt_v": -0.2}, 0.000016},
		{"ads1015: 12 bits, 2 mV steps at 4.096 V", `{"chip": "ads1015", "channels": [{"input": "1"}]}`, map[string]float64{"ain1_v": 1.0009},
			map[string]float64{"ain1_v": 1.0}, 0.0000001},
		{"6.144 V range", `{"channels": [{"input": "0", "full_scale_v": 5}]}`, map[string]float64{"ain0_v": 3.3},
			map[string]float64{"ain0_v": 3.3}, 0.0002},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, ctl := drvtest.Open(t, sensors.Part{Name: "bed", Type: Type, Options: json.RawMessage(tt.opts)})
			for _, n := range []string{"ain0_v", "ain1_v", "ain2_v", "ain3_v", "soil_pct"} {
				if v, ok := tt.set[n]; ok {
					if err := ctl.Set(n, v); err != nil {
						t.Fatalf("Set(%s, %v): %v", n, v, err)
					}
				}
			}
			got := drvtest.Read(t, s)
			if len(got) != len(tt.want) {
				t.Fatalf("read %v, want %v", got, tt.want)
			}
			for n, w := range tt.want {
				if math.Abs(got[n]-w) > tt.epsilon {
					t.Errorf("%s = %v, want %v ± %v", n, got[n], w, tt.epsilon)
				}
			}
		})
	}
}

// An input beyond the full scale saturates the code: an error, not a
// clipped reading.
func TestSaturated(t *testing.T) {
	s, ctl := drvtest.Open(t, sensors.Part{Name: "bed", Type: Type, Options: json.RawMessage(`{"channels": [{"input": "0", "name": "level_v", "full_scale_v": 2}]}`)})
	if err := ctl.Set("ain0_v", 3.0); err != nil {
		t.Fatal(err)
	}
	_, err := s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrImplausible, `part "bed"`, "input 0 (level_v)", "±2.048 V", "full_scale_v")
	if err := ctl.Set("level_v", 3.0); !errors.Is(err, sim.ErrOutOfRange) {
		t.Errorf("Set(level_v, 3) beyond full scale = %v, want ErrOutOfRange", err)
	}
	// The reading name refuses what the chip could not report.
	if err := ctl.Set("ain0_v", 3.7); !errors.Is(err, sim.ErrOutOfRange) {
		t.Errorf("Set(ain0_v, 3.7) above VDD+0.3 = %v, want ErrOutOfRange", err)
	}
}

func TestSimRefuses(t *testing.T) {
	_, ctl := drvtest.Open(t, sensors.Part{Name: "bed", Type: Type, Options: json.RawMessage(soil)})
	for _, v := range []float64{-100, 500, math.NaN()} { // -100 % is 4.4 V, beyond 4.096 V
		if err := ctl.Set("soil_pct", v); !errors.Is(err, sim.ErrOutOfRange) {
			t.Errorf("Set(soil_pct, %v) = %v, want ErrOutOfRange", v, err)
		}
	}
	if err := ctl.Set("flow", 1); err == nil {
		t.Error("Set of a reading the part does not have succeeded")
	}
}

func TestErrors(t *testing.T) {
	drvtest.I2CErrors(t, drvtest.I2CCase{
		Type: Type, Addr: 0x48, Other: 0x49, Invalid: 0x4c, Options: soil,
		Chip: func() sim.Device { return sim.NewADS1115(3.3) },
	})
	for _, tt := range []struct{ opts, says string }{
		{`{}`, "channels"},
		{`{"channels": []}`, "channels"},
		{`{"chip": "ads1118", "channels": [{"input": "0"}]}`, `chip "ads1118"`},
		{`{"channels": [{"input": "4"}]}`, `channels[0].input "4"`},
		{`{"channels": [{"input": "1-0"}]}`, `channels[0].input "1-0"`},
		{`{"channels": [{"input": "0"}, {"input": "1", "name": "ain0_v"}]}`, `channels[1].name "ain0_v": used twice`},
		{`{"channels": [{"input": "0", "name": "Soil %"}]}`, `channels[0].name "Soil %"`},
		{`{"channels": [{"input": "0", "scale": 0}]}`, "channels[0].scale is 0"},
		{`{"channels": [{"input": "0", "full_scale_v": 7}]}`, "channels[0].full_scale_v 7"},
		{`{"channels": [{"input": "0", "gain": 2}]}`, `"gain"`},
	} {
		err := drvtest.OpenErr(t, sensors.Part{Name: "bed", Type: Type, Options: json.RawMessage(tt.opts)}, drvtest.Host(sim.NewI2CBus("t")))
		drvtest.WantErr(t, err, sensors.ErrOptions, `part "bed"`, tt.says)
	}
}

// FuzzOptions: any options either open the part or fail with ErrOptions;
// never a panic.
func FuzzOptions(f *testing.F) {
	f.Add(soil)
	f.Add(`{"chip": "ads1015", "channels": [{"input": "0-1", "full_scale_v": 0.256}]}`)
	f.Add(`{"channels": [{"input": "3", "scale": 1e308, "offset": -1e308}]}`)
	f.Add(`{"channels": [{"input": ""}]}`)
	f.Fuzz(func(t *testing.T, opts string) {
		p := sensors.Part{Name: "bed", Type: Type, Options: json.RawMessage(opts)}
		_, _, err := parse(p)
		if err != nil && !errors.Is(err, sensors.ErrOptions) {
			t.Fatalf("parse(%q) = %v, not ErrOptions", opts, err)
		}
	})
}
