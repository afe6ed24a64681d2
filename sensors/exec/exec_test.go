package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drvtest"
)

// The test binary doubles as the command: with EXEC_TEST set it prints
// EXEC_OUT, writes EXEC_ERR to stderr, sleeps EXEC_SLEEP and exits with
// EXEC_CODE.
func TestMain(m *testing.M) {
	if os.Getenv("EXEC_TEST") == "" {
		os.Exit(m.Run())
	}
	switch os.Getenv("EXEC_TEST") {
	case "env":
		_, home := os.LookupEnv("HOME")
		fmt.Printf(`{"has_home": %d, "env_count": %d, "part_is_soil": %d}`, b2i(home), len(os.Environ()), b2i(os.Getenv("IOTAGENT_PART") == "soil"))
	case "child":
		// A child that keeps stdout open, in the command's group.
		c := osexec.Command("sleep", "30")
		c.Stdout = os.Stdout
		_ = c.Start()
		time.Sleep(30 * time.Second)
	case "flood":
		big := strings.Repeat("x", 1<<20)
		for {
			if _, err := os.Stdout.WriteString(big); err != nil {
				os.Exit(9)
			}
		}
	default:
		fmt.Fprint(os.Stderr, os.Getenv("EXEC_ERR"))
		fmt.Print(os.Getenv("EXEC_OUT"))
		if d, err := time.ParseDuration(os.Getenv("EXEC_SLEEP")); err == nil {
			time.Sleep(d)
		}
		if os.Getenv("EXEC_CODE") != "" {
			os.Exit(3)
		}
	}
	os.Exit(0)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func self(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		// make test-arm runs -short under qemu-user, where this ARM test
		// binary cannot exec itself.
		t.Skip("runs this test binary as the command; skipped with -short")
	}
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func openCmd(t *testing.T, opts map[string]any) sensors.Sampler {
	t.Helper()
	if _, ok := opts["argv"]; !ok {
		opts["argv"] = []string{self(t)}
	}
	b, _ := json.Marshal(opts)
	d, _ := sensors.Lookup(Type)
	s, err := d.Open(t.Context(), sensors.Part{Name: "soil", Type: Type, Options: b}, sensors.Host{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseOutput(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want sensors.Values
		says string
	}{
		{`{"soil_pct": 41.5, "battery_v": 3.71}`, sensors.Values{"soil_pct": 41.5, "battery_v": 3.71}, ""},
		{"\n  {\"a\": -1e-3}\n\n", sensors.Values{"a": -0.001}, ""},
		{`{"a": 0, "b": 1E2}`, sensors.Values{"a": 0, "b": 100}, ""},
		{``, nil, "empty"},
		{`{}`, nil, "no readings"},
		{`{"a": "1"}`, nil, `reading "a" is a string`},
		{`{"a": null}`, nil, `reading "a" is null`},
		{`{"a": true}`, nil, `reading "a" is a boolean`},
		{`{"a": {"b": 1}}`, nil, `reading "a" is an object`},
		{`{"a": [1]}`, nil, `reading "a" is an array`},
		{`{"a": NaN}`, nil, "not JSON"},
		{`{"a": 1e999}`, nil, `reading "a": 1e999 is out of range`},
		{`{"a": -1e400}`, nil, "out of range"},
		{`{"a": 1, "a": 2}`, nil, `"a" appears twice`},
		{`{"a": 1}{"b": 2}`, nil, "more after the object"},
		{`{"a": 1} x`, nil, "more after the object"},
		{`[1, 2]`, nil, "begins with an array"},
		{`42`, nil, "begins with a number"},
		{`{"Soil %": 1}`, nil, `reading name "Soil %"`},
		{`{"": 1}`, nil, `reading name ""`},
		{`{"a": 1`, nil, "not JSON"},
		{`temperature=21`, nil, "not JSON"},
	} {
		got, err := ParseOutput([]byte(tt.in))
		if tt.says == "" {
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("ParseOutput(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			continue
		}
		if got != nil || !errors.Is(err, sensors.ErrCorrupt) || !strings.Contains(fmt.Sprint(err), tt.says) {
			t.Errorf("ParseOutput(%q) = %v, %v; want ErrCorrupt saying %q", tt.in, got, err, tt.says)
		}
	}
	many := map[string]int{}
	for i := range MaxReadings + 1 {
		many[fmt.Sprintf("r%d", i)] = i
	}
	b, _ := json.Marshal(many)
	if _, err := ParseOutput(b); !errors.Is(err, sensors.ErrCorrupt) {
		t.Errorf("%d readings: %v", len(many), err)
	}
}

// A real process: its stdout parsed, its failures named.
func TestRead(t *testing.T) {
	s := openCmd(t, map[string]any{"env": map[string]string{"EXEC_TEST": "1", "EXEC_OUT": `{"soil_pct": 41.5}`}})
	if v := drvtest.Read(t, s); v["soil_pct"] != 41.5 || len(v) != 1 {
		t.Errorf("read %v", v)
	}

	s = openCmd(t, map[string]any{"env": map[string]string{"EXEC_TEST": "1", "EXEC_OUT": `{"a": 1}`, "EXEC_ERR": "probe not found on /dev/ttyUSB0\n", "EXEC_CODE": "3"}})
	_, err := s.Read(t.Context())
	var exit *osexec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("error %v is not exit status 3", err)
	}
	drvtest.WantErr(t, err, exit, `part "soil"`, "exit status 3", `stderr: "probe not found on /dev/ttyUSB0"`)

	s = openCmd(t, map[string]any{"env": map[string]string{"EXEC_TEST": "1", "EXEC_OUT": `{"a": "wet"}`}})
	_, err = s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrCorrupt, `part "soil"`, "stdout", `reading "a" is a string`)

	s = openCmd(t, map[string]any{"max_output_bytes": 100, "env": map[string]string{"EXEC_TEST": "1", "EXEC_OUT": `{"a": 1` + strings.Repeat(" ", 200) + `}`}})
	_, err = s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrCorrupt, `part "soil"`, "max_output_bytes (100)")
}

// A command that floods stdout is cut off at the limit.
func TestFlood(t *testing.T) {
	s := openCmd(t, map[string]any{"env": map[string]string{"EXEC_TEST": "flood"}})
	_, err := s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrCorrupt, "max_output_bytes (65536)")
}

// A command past its timeout is killed with its children (whose stdout
// would otherwise hold the read open for 30 s).
func TestTimeout(t *testing.T) {
	for _, mode := range []string{"1", "child"} {
		s := openCmd(t, map[string]any{"timeout": "300ms", "env": map[string]string{"EXEC_TEST": mode, "EXEC_SLEEP": "30s"}})
		start := time.Now()
		_, err := s.Read(t.Context())
		drvtest.WantErr(t, err, context.DeadlineExceeded, `part "soil"`, "within 300ms", "killed")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: Read returned after %v", mode, d)
		}
	}
}

// A Read canceled by its caller (the agent stopping) kills the command.
func TestCanceled(t *testing.T) {
	s := openCmd(t, map[string]any{"env": map[string]string{"EXEC_TEST": "1", "EXEC_SLEEP": "30s"}})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Read(ctx)
	drvtest.WantErr(t, err, context.DeadlineExceeded, `part "soil"`, "killed")
	if strings.Contains(err.Error(), "within 10s") {
		t.Errorf("error %q blames the part's timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Read returned after %v", d)
	}
}

// The command gets a small environment, not the agent's.
func TestEnvironment(t *testing.T) {
	t.Setenv("HOME", "/root")
	s := openCmd(t, map[string]any{"env": map[string]string{"EXEC_TEST": "env"}})
	v := drvtest.Read(t, s)
	// PATH, LANG, IOTAGENT_PART, EXEC_TEST.
	if v["has_home"] != 0 || v["env_count"] != 4 || v["part_is_soil"] != 1 {
		t.Errorf("environment: %v", v)
	}
}

func TestOptions(t *testing.T) {
	for _, tt := range []struct{ opts, says string }{
		{`{}`, "argv"},
		{`{"argv": []}`, "argv"},
		{`{"argv": [""]}`, "argv"},
		{`{"argv": ["/bin/true"], "timeout": "0s"}`, `timeout "0s"`},
		{`{"argv": ["/bin/true"], "timeout": "1h"}`, `timeout "1h"`},
		{`{"argv": ["/bin/true"], "timeout": 5}`, "timeout"},
		{`{"argv": ["/bin/true"], "max_output_bytes": 2000000}`, "max_output_bytes 2000000"},
		{`{"argv": ["/bin/true"], "env": {"A=B": "c"}}`, `env "A=B"`},
		{`{"argv": ["/bin/true"], "sim_readings": {"Bad Name": 1}}`, `sim_readings "Bad Name"`},
		{`{"argv": ["/bin/true"], "sim_argv": []}`, "sim_argv"},
		{`{"argv": ["/bin/true"], "shell": true}`, `"shell"`},
		{`{"argv": "/bin/true"}`, "argv"},
	} {
		err := drvtest.OpenErr(t, sensors.Part{Name: "soil", Type: Type, Options: json.RawMessage(tt.opts)}, sensors.Host{})
		drvtest.WantErr(t, err, sensors.ErrOptions, `part "soil"`, tt.says)
	}
	notExec := t.TempDir() + "/read-soil"
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, argv := range []string{"no-such-command-here", "/nonexistent/read-soil", notExec} {
		b, _ := json.Marshal(map[string]any{"argv": []string{argv}})
		err := drvtest.OpenErr(t, sensors.Part{Name: "soil", Type: Type, Options: b}, sensors.Host{})
		drvtest.WantErr(t, err, sensors.ErrNoDevice, `part "soil"`, argv)
	}
	err := drvtest.OpenErr(t, sensors.Part{Name: "soil", Type: Type, Bus: "1", Options: json.RawMessage(`{"argv": ["/bin/true"]}`)}, sensors.Host{})
	drvtest.WantErr(t, err, sensors.ErrOptions, "no bus")
}

// The simulated part: cat on the readings file through the real process
// and parser.
func TestSim(t *testing.T) {
	s, ctl := drvtest.Open(t, sensors.Part{Name: "soil", Type: Type, Options: json.RawMessage(`{"argv": ["/usr/local/bin/read-soil"], "sim_readings": {"soil_pct": 40, "battery_v": 3.7}}`)})
	if v := drvtest.Read(t, s); v["soil_pct"] != 40 || v["battery_v"] != 3.7 || len(v) != 2 {
		t.Errorf("read %v", v)
	}
	if err := ctl.Set("soil_pct", 12.25); err != nil {
		t.Fatal(err)
	}
	if v := drvtest.Read(t, s); v["soil_pct"] != 12.25 {
		t.Errorf("read after Set %v", v)
	}
	for _, c := range []struct {
		n string
		v float64
	}{{"soil_pct", math.NaN()}, {"soil_pct", math.Inf(1)}, {"flow", 1}, {"Bad", 1}} {
		if err := ctl.Set(c.n, c.v); err == nil {
			t.Errorf("Set(%s, %v) succeeded", c.n, c.v)
		}
	}

	// Without sim_readings: any name, but no reading until one is set.
	s, ctl = drvtest.Open(t, sensors.Part{Name: "soil", Type: Type, Options: json.RawMessage(`{"argv": ["read-soil"]}`)})
	_, err := s.Read(t.Context())
	drvtest.WantErr(t, err, sensors.ErrCorrupt, "no readings")
	if err := ctl.Set("level_m", 1.5); err != nil {
		t.Fatal(err)
	}
	if v := drvtest.Read(t, s); v["level_m"] != 1.5 {
		t.Errorf("read %v", v)
	}

	// sim_argv runs the developer's own fake.
	b, _ := json.Marshal(map[string]any{"argv": []string{"read-soil"}, "sim_argv": []string{self(t)}, "env": map[string]string{"EXEC_TEST": "1", "EXEC_OUT": `{"fake": 7}`}})
	s, _ = drvtest.Open(t, sensors.Part{Name: "soil", Type: Type, Options: b})
	if v := drvtest.Read(t, s); v["fake"] != 7 {
		t.Errorf("read %v", v)
	}
}

func FuzzParseOutput(f *testing.F) {
	f.Add([]byte(`{"soil_pct": 41.5, "battery_v": 3.71}`))
	f.Add([]byte(`{"a": 1e999}`))
	f.Add([]byte(`{"a": "x", "a": [1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseOutput(b)
		if err != nil {
			if !errors.Is(err, sensors.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if len(v) == 0 || len(v) > MaxReadings {
			t.Fatalf("%d readings", len(v))
		}
		for k, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) || k == "" {
				t.Fatalf("reading %q = %v", k, x)
			}
		}
	})
}

func FuzzOptions(f *testing.F) {
	f.Add(`{"argv": ["/bin/true"], "timeout": "5s", "max_output_bytes": 100, "env": {"A": "b"}, "sim_readings": {"a": 1}}`)
	f.Add(`{"argv": ["x"], "sim_argv": ["y"]}`)
	f.Fuzz(func(t *testing.T, opts string) {
		o, err := ParseOptions(sensors.Part{Name: "soil", Type: Type, Options: json.RawMessage(opts)})
		if err != nil {
			if !errors.Is(err, sensors.ErrOptions) {
				t.Fatalf("error %v is not ErrOptions", err)
			}
			return
		}
		if len(o.Argv) == 0 || o.timeout <= 0 || o.timeout > MaxTimeout || o.MaxOutputBytes > MaxOutput {
			t.Fatalf("accepted %+v", o)
		}
	})
}
