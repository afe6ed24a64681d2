package drv

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sim"
)

type opts struct {
	Rate  int     `json:"rate"`
	Scale float64 `json:"scale"`
	Name  string  `json:"name"`
}

func TestOptions(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want opts
		says string
	}{
		{``, opts{Rate: 1}, ""},
		{`null`, opts{Rate: 1}, ""},
		{` {"rate": 5, "scale": 0.5} `, opts{Rate: 5, Scale: 0.5}, ""},
		{`{"rate": 5, "bogus": 1}`, opts{}, `unknown field "bogus"`},
		{`{"rate": "5"}`, opts{}, "rate"},
		{`{"rate": 5} {}`, opts{}, "data after the object"},
		{`{"rate": 5} x`, opts{}, "data after the object"},
		{`[1]`, opts{}, "cannot unmarshal array"},
		{`{`, opts{}, "EOF"},
	} {
		o := opts{Rate: 1}
		err := Options(sensors.Part{Name: "p", Type: "t", Options: json.RawMessage(tt.in)}, &o)
		if tt.says == "" {
			if err != nil || o != tt.want {
				t.Errorf("Options(%q) = %+v, %v; want %+v", tt.in, o, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, sensors.ErrOptions) || !strings.Contains(fmt.Sprint(err), tt.says) || !strings.Contains(fmt.Sprint(err), `part "p" (t)`) {
			t.Errorf("Options(%q) = %v; want ErrOptions naming the part and saying %q", tt.in, err, tt.says)
		}
	}
}

func TestIsNACK(t *testing.T) {
	for _, tt := range []struct {
		err  error
		nack bool
	}{
		{fmt.Errorf("x: %w", sim.ErrNACK), true},
		{errors.New("sysfs-i2c: remote I/O error"), true},
		{errors.New("sysfs-i2c: no such device or address"), true},
		{errors.New("sysfs-i2c: input/output error"), false},
		{nil, false},
	} {
		if got := IsNACK(tt.err); got != tt.nack {
			t.Errorf("IsNACK(%v) = %v", tt.err, got)
		}
	}
}

func TestChecked(t *testing.T) {
	r := map[string][2]float64{"t": {-40, 85}}
	if _, err := Checked(sensors.Values{"t": 85, "x": 1e300}, r); err != nil {
		t.Errorf("in range: %v", err)
	}
	for _, v := range []sensors.Values{{"t": 85.1}, {"t": math.NaN()}, {"x": math.Inf(-1)}} {
		if _, err := Checked(v, r); !errors.Is(err, sensors.ErrImplausible) {
			t.Errorf("Checked(%v) = %v, want ErrImplausible", v, err)
		}
	}
}

func FuzzOptions(f *testing.F) {
	f.Add(`{"rate": 5, "scale": 0.5, "name": "x"}`)
	f.Add(`{"rate": 5, "bogus": 1}`)
	f.Fuzz(func(t *testing.T, in string) {
		var o opts
		err := Options(sensors.Part{Name: "p", Type: "t", Options: json.RawMessage(in)}, &o)
		if err != nil && !errors.Is(err, sensors.ErrOptions) {
			t.Fatalf("error %v is not ErrOptions", err)
		}
		if err == nil && strings.TrimSpace(in) != "" && strings.TrimSpace(in) != "null" && !json.Valid([]byte(in)) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
	})
}
