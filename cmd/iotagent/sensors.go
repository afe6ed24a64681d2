package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/sensors"
)

func sensorsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "read" && args[0] != "watch") {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(stdout, "Usage: iotagent sensors read|watch [flags]\n")
			return nil
		}
		return usagef("usage: iotagent sensors read|watch [flags]")
	}
	watch := args[0] == "watch"
	name, synopsis, text := "sensors read", "sensors read [flags]",
		"Reads every sensor now through the running agent. When the agent is not running\n"+
			"it opens the hardware from --config directly (and says so)."
	if watch {
		name, synopsis, text = "sensors watch", "sensors watch [flags]",
			"Reads every sensor every --interval until interrupted (or --count times)."
	}
	c := newFlags(name, synopsis, text, stderr)
	direct := c.fs.Bool("direct", false, "read the hardware directly even if the agent runs (it may hold the pins)")
	interval := c.fs.Duration("interval", 2*time.Second, "watch: time between reads")
	count := c.fs.Int("count", 0, "watch: stop after this many reads (0: until interrupted)")
	if err := c.parse(args[1:], 0); err != nil {
		return err
	}
	if *interval <= 0 {
		return usagef("--interval must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r := &sensorReader{c: c, direct: *direct, stderr: stderr}
	defer r.close()
	for i := 0; ; i++ {
		se, err := r.read(ctx)
		if err != nil {
			return err
		}
		if *c.json {
			if err := printJSON(stdout, se); err != nil {
				return err
			}
		} else {
			fmt.Fprint(stdout, renderSensorsOnly(se, now()))
		}
		if !watch || (*count > 0 && i+1 >= *count) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

// sensorReader reads through the agent, or the hardware when the agent is
// not running.
type sensorReader struct {
	c      common
	direct bool
	stderr io.Writer
	hw     *agent.Hardware
	maxC   float64
	said   bool
}

func (r *sensorReader) read(ctx context.Context) (localapi.Sensors, error) {
	if !r.direct && r.hw == nil {
		var se localapi.Sensors
		err := r.c.client().Do(ctx, localapi.ActionReadSensors, nil, &se)
		if err == nil || !errors.Is(err, localapi.ErrNotRunning) {
			return se, err
		}
		if !r.said {
			fmt.Fprintf(r.stderr, "iotagent: %v\niotagent: reading the hardware directly (config %s)\n", err, *r.c.cfgPath)
			r.said = true
		}
	}
	if r.hw == nil {
		cfg, err := loadConfig(*r.c.cfgPath, nil)
		if err != nil {
			return localapi.Sensors{}, err
		}
		if r.hw, err = openHardware(cfg); err != nil {
			return localapi.Sensors{}, err
		}
		r.maxC = cfg.Temperature.MaxC
	}
	return readDirect(ctx, r.hw, r.maxC), nil
}

func (r *sensorReader) close() {
	if r.hw != nil && r.hw.Close != nil {
		_ = r.hw.Close()
	}
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
func readDirect(ctx context.Context, hw *agent.Hardware, maxC float64) localapi.Sensors {
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

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }
