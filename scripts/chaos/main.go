// Command chaos runs the real iotagent binary against `iotsim serve` under
// every protocol fault class of iotsim's fault engine, one class after
// another, while it raises alarms and telemetry through the simulated
// sensors' FIFOs, changes desired state and queues jobs through iotsim's
// REST API. Each class adds its faults (aimed at the agent's client ID),
// keeps the work going for the class's active time, removes the faults and
// waits for the agent to settle: every alarm delivered, the shadow
// converged to the last desired state, every job terminal. It prints a
// table (fault class, alarms raised, delivered, lost, duplicates, ...) and
// exits non-zero when an alarm is lost, duplicates pass their bound, the
// shadow or a job does not settle, or the agent's goroutines, open files or
// memory grew beyond noise.
//
// `make chaos` runs every class once within CHAOS_TIME; `make soak` runs
// them round after round for SOAK_TIME and reports the drift of the
// agent's RSS after a warm-up. See docs/testing.md, "Chaos and soak".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"
)

// opts are the command's flags.
type opts struct {
	bin, config    string
	total          time.Duration // chaos: the budget for every class
	soak           time.Duration // soak: run rounds this long (0: chaos)
	warmup         time.Duration // soak: RSS samples before this are left out
	sample         time.Duration // soak: RSS sampling interval
	classTime      time.Duration // active time per class (0: derived from total)
	alarmEvery     time.Duration
	desiredEvery   time.Duration
	settleLimit    time.Duration
	only           *regexp.Regexp
	keep           bool
	maxRSSDrift    int64 // soak: KiB (0: report only)
	rssNoise       int64 // chaos: KiB of RSS growth that is noise
	goroutineNoise int
	fdNoise        int
}

func main() {
	var o opts
	var only string
	var driftMiB, noiseMiB float64
	flag.StringVar(&o.bin, "bin", "bin", "directory holding the iotagent and iotsim binaries")
	flag.StringVar(&o.config, "config", "configs/chocolate-box.json", "agent config the run starts from (simulated sensors)")
	flag.DurationVar(&o.total, "time", 8*time.Minute, "chaos: the time budget for all fault classes (each class's active time is derived from it; settling comes on top)")
	flag.DurationVar(&o.soak, "soak", 0, "soak: run the fault classes round after round for this long (e.g. 1h) and report RSS drift")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Minute, "soak: RSS samples taken before this are left out of the drift")
	flag.DurationVar(&o.sample, "sample", 10*time.Second, "soak: RSS sampling interval")
	flag.DurationVar(&o.classTime, "class-time", 0, "active time of each fault class (default: chaos derives it from --time, soak uses 20s)")
	flag.DurationVar(&o.alarmEvery, "alarm-every", 500*time.Millisecond, "raise an alarm this often (sensors alternate)")
	flag.DurationVar(&o.desiredEvery, "desired-every", 2*time.Second, "change desired state this often")
	flag.DurationVar(&o.settleLimit, "settle-limit", 2*time.Minute, "how long the agent may take to settle after a class's faults are removed")
	flag.StringVar(&only, "only", "", "run only the fault classes matching this regular expression (none, the baseline, always runs)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, state) for inspection")
	flag.Float64Var(&driftMiB, "max-rss-drift", 1, "soak: fail when the agent's RSS grew more than this many MiB after the warm-up (0: report only)")
	flag.Float64Var(&noiseMiB, "rss-noise", 16, "chaos: RSS growth (MiB) between the baseline and the end that counts as noise")
	flag.IntVar(&o.goroutineNoise, "goroutine-noise", 10, "goroutines more at the end than at the baseline that count as noise")
	flag.IntVar(&o.fdNoise, "fd-noise", 4, "open files more at the end than at the baseline that count as noise")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chaos: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos: --only: %v\n", err)
			os.Exit(2)
		}
		o.only = re
	}
	o.maxRSSDrift = int64(driftMiB * 1024)
	o.rssNoise = int64(noiseMiB * 1024)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, o)
	if err != nil {
		var f *failed
		if errors.As(err, &f) {
			fmt.Fprintf(os.Stderr, "\nchaos FAILED:\n%s\n", f)
		} else {
			fmt.Fprintln(os.Stderr, "chaos:", err)
		}
		os.Exit(1)
	}
}
