package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/sensors"
)

const sensorsReadText = `Reads every input and sensor part now (not its last scheduled reading),
through the running agent: each read waits for the agent's own read of the
part under way and is bounded like it. A part whose read fails shows its
error and what to check; the others are read all the same. When the agent
is not running (or with --direct) it opens every part of the config
directly (simulated ones from their sim_values), and says so: only the
config's sensors or parts section needs to be valid then.`

const sensorsWatchText = `Reads every sensor every --interval until interrupted (or --count times),
through the running agent, or directly as sensors read does.`

func sensorsSetup(watch bool) func(fs *flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		direct := fs.Bool("direct", false, "read the hardware directly even if the agent runs (it may hold the pins)")
		interval, count := new(time.Duration), new(int)
		if watch {
			interval = fs.Duration("interval", 2*time.Second, "time between reads")
			count = fs.Int("count", 0, "stop after this many reads (0: until interrupted)")
		}
		return func(x *inv) error { return sensorsRun(x, watch, *direct, *interval, *count) }
	}
}

func sensorsRun(x *inv, watch, direct bool, interval time.Duration, count int) error {
	if watch && interval <= 0 {
		return &usageError{cmd: x.cmd, msg: "iotagent sensors watch: --interval must be positive"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r := &sensorReader{x: x, direct: direct, stderr: x.stderr}
	defer r.close()
	for i := 0; ; i++ {
		se, err := r.read(ctx)
		if err != nil {
			return err
		}
		if x.json {
			if err := printJSON(x.stdout, se); err != nil {
				return err
			}
		} else {
			fmt.Fprint(x.stdout, renderSensorsOnly(se, now()))
		}
		if !watch || (count > 0 && i+1 >= count) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// sensorReader reads through the agent, or the hardware when the agent is
// not running.
type sensorReader struct {
	x      *inv
	direct bool
	stderr io.Writer
	hw     *agent.Hardware
	cfg    *config.Config
	said   bool
}

func (r *sensorReader) read(ctx context.Context) (localapi.Sensors, error) {
	if !r.direct && r.hw == nil {
		var se localapi.Sensors
		c, err := r.x.client()
		if err != nil {
			return se, err
		}
		err = c.Do(ctx, localapi.ActionReadSensors, nil, &se)
		if err == nil || !errors.Is(err, localapi.ErrNotRunning) {
			return se, err
		}
		if !r.said {
			fmt.Fprintf(r.stderr, "iotagent: %v\niotagent: reading the hardware directly (config %s)\n", err, r.x.configFile())
			r.said = true
		}
	}
	if r.hw == nil {
		cfg, err := sensorConfig(r.x)
		if err != nil {
			return localapi.Sensors{}, err
		}
		if r.hw, err = openHardware(cfg); err != nil {
			return localapi.Sensors{}, err
		}
		r.cfg = &cfg
	}
	return readDirect(ctx, r.hw, r.cfg), nil
}

func (r *sensorReader) close() {
	if r.hw != nil && r.hw.Close != nil {
		_ = r.hw.Close()
	}
}

// sensorConfig reads the config for reading the sensors directly: only
// its sensors section (and state_dir, for simulated sensors' pipes) need
// be valid; the rest (endpoint, identity, ...) does not matter here.
func sensorConfig(x *inv) (config.Config, error) {
	path := x.configFile()
	cfg, ok, err := x.rawConfig()
	if err != nil {
		return cfg, err
	}
	if !ok {
		return cfg, &configError{fmt.Errorf("config %s: no such file (give the agent's config with --config)", path)}
	}
	if err := cfg.ValidateSensors(); err != nil {
		return cfg, &configError{fmt.Errorf("config %s:\n%w", path, err)}
	}
	return cfg, nil
}

// openHardware opens the configured sensors (the periph drivers first when
// they are real).
func openHardware(cfg config.Config) (*agent.Hardware, error) {
	if agent.NeedsHost(cfg) {
		if _, err := initHost(); err != nil {
			return nil, fmt.Errorf("periph host init: %w", err)
		}
	}
	return agent.OpenHardware(cfg)
}

// readDirect samples hw now. Simulated inputs read their idle level: no
// agent feeds their pipes.
func readDirect(ctx context.Context, hw *agent.Hardware, cfg *config.Config) localapi.Sensors {
	maxC := config.Default().Temperature.MaxC
	if cfg != nil {
		maxC = cfg.Temperature.MaxC
	}
	se := localapi.Sensors{Source: "direct"}
	for _, in := range []sensors.Input{hw.Motion, hw.Contact} {
		if in == nil {
			continue
		}
		on, err := in.Active()
		s := localapi.InputState{Name: in.Name(), Active: on}
		if err != nil {
			s.Error = err.Error()
		}
		se.Inputs = append(se.Inputs, s)
	}
	if hw.Env != nil {
		e := &localapi.EnvReading{Sensor: hw.Env.Name(), MaxC: maxC}
		rd, err := hw.Env.Read(ctx)
		if err != nil {
			e.Error = err.Error()
		} else {
			e.Time, e.TemperatureC, e.HumidityPct, e.PressureKPa = rd.Time, round2(rd.TemperatureC), round2(rd.HumidityPct), round2(rd.PressureKPa)
			e.High = rd.TemperatureC > maxC
		}
		se.Env = e
	}
	names := make([]string, 0, len(hw.Inputs))
	for n := range hw.Inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		on, err := hw.Inputs[n].Active()
		s := localapi.InputState{Name: n, Active: on}
		if err != nil {
			s.Error = err.Error()
		}
		se.Inputs = append(se.Inputs, s)
	}
	var parts []config.NamedPart
	if cfg != nil {
		parts = cfg.DeviceParts()
	}
	for _, np := range parts {
		smp := hw.Samplers[np.Name]
		if smp == nil {
			continue
		}
		if se.Parts == nil {
			se.Parts = map[string]map[string]any{}
		}
		p := map[string]any{}
		v, perr := agent.ReadPart(ctx, np, smp)
		if np.Type == "bme280" && se.Env == nil { // the chocolate box's line
			e := &localapi.EnvReading{Sensor: np.Name, TemperatureC: round2(v["temperature_c"]), HumidityPct: round2(v["humidity_pct"]),
				PressureKPa: round2(v["pressure_kpa"]), Error: perr}
			if l, ok := np.Limits["temperature_c"]; ok && l.High != nil {
				e.MaxC = *l.High
				e.High = v != nil && v["temperature_c"] > e.MaxC
			}
			se.Env = e
		}
		if perr != "" {
			p["error"] = perr
		}
		for k, f := range v {
			p[k] = round2(f)
		}
		se.Parts[np.Name] = p
	}
	return se
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// renderSensorsOnly is the text of one sensors read.
func renderSensorsOnly(se localapi.Sensors, now time.Time) string {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-11s %s\n", label, fmt.Sprintf(format, args...))
	}
	src := map[string]string{"live": "read now by the agent", "agent": "the agent's last values", "direct": "read directly (no agent)"}[se.Source]
	line("Source", "%s, %s", src, stamp(now))
	renderSensors(&b, se, line)
	return b.String()
}
