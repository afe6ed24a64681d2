package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/cloud/broker"
)

// failed is a run that completed with failed checks.
type failed struct{ reasons []string }

func (f *failed) Error() string { return strings.Join(f.reasons, "\n") }

// row is one fault class's outcome (summed over rounds in a soak).
type row struct {
	class          string
	rounds         int
	injected       int64
	raised         int
	delivered      int
	duplicates     int
	telemetry      int64
	warnings       int64
	desired        int
	shadowOK       int // rounds whose shadow converged
	jobs, jobsDone int // jobs queued, and ended as they must
	settle         time.Duration
	maxSettle      time.Duration
	keys           []alarmKey
	problems       []string
}

func (r *row) lost() int { return r.raised - r.delivered }

// sample is the agent's resources at one moment.
type sample struct {
	at         time.Time
	goroutines int
	fds        int
	rssKiB     int64
}

func (e *env) sample(ctx context.Context) (sample, error) {
	s := sample{at: time.Now()}
	var ag localapi.Agent
	if err := e.local.Get(ctx, localapi.SectionAgent, &ag); err != nil {
		return s, fmt.Errorf("local API agent: %w", err)
	}
	s.goroutines = ag.Goroutines
	var err error
	if s.fds, err = openFiles(e.agent.pid()); err != nil {
		return s, err
	}
	if s.rssKiB, err = rssKiB(e.agent.pid()); err != nil {
		return s, err
	}
	return s, nil
}

// quietSample is the smallest of three samples a second apart (the local
// API's own connection and a GC cycle in progress are not growth).
func (e *env) quietSample(ctx context.Context) (sample, error) {
	var best sample
	for i := range 3 {
		if i > 0 {
			time.Sleep(time.Second)
		}
		s, err := e.sample(ctx)
		if err != nil {
			return s, err
		}
		if i == 0 {
			best = s
			continue
		}
		best.goroutines = min(best.goroutines, s.goroutines)
		best.fds = min(best.fds, s.fds)
		best.rssKiB = min(best.rssKiB, s.rssKiB)
		best.at = s.at
	}
	return best, nil
}

// phase runs one fault class: faults added, work for active (longer, up to
// 30 s more, until every fault was injected once), faults removed, then
// the wait for the agent to settle. Problems go into r; an error is a run
// that cannot go on.
func (w *work) phase(ctx context.Context, o opts, c broker.FaultClass, round int, active time.Duration, r *row) error {
	e := w.e
	r.rounds++
	var ids []string
	for _, f := range c.Aimed(thing, active) {
		st, err := e.cli.AddFault(ctx, f)
		if err != nil {
			return fmt.Errorf("%s: AddFault %+v: %w", c.Name, f, err)
		}
		ids = append(ids, st.ID)
	}
	jobs, err := w.jobs(ctx, fmt.Sprintf("%s-%d", c.Name, round))
	if err != nil {
		return err
	}
	r.jobs += len(jobs)
	tel0, warn0 := e.obs.telemetry.Load(), e.obs.warnings.Load()

	start := time.Now()
	nextDesired := start.Add(o.desiredEvery)
	nextTemp := start
	tick := time.NewTicker(o.alarmEvery)
	defer tick.Stop()
	injected := map[string]int64{}
	for {
		if err := e.agent.alive(); err != nil {
			return err
		}
		k, err := w.alarm(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		r.keys = append(r.keys, k)
		r.raised++
		now := time.Now()
		if !now.Before(nextTemp) {
			if err := w.temperature(); err != nil {
				return err
			}
			nextTemp = now.Add(time.Second)
		}
		if !now.Before(nextDesired) {
			if err := w.changeDesired(ctx); err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			r.desired++
			nextDesired = now.Add(o.desiredEvery)
		}
		if now.Sub(start) >= active {
			rep, err := e.cli.ListFaults(ctx)
			if err != nil {
				return fmt.Errorf("ListFaults: %w", err)
			}
			all := true
			for _, f := range rep.Faults {
				if slices.Contains(ids, f.ID) {
					injected[f.ID] = f.Injected
					all = all && f.Injected > 0
				}
			}
			if all || now.Sub(start) >= active+30*time.Second {
				break
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	if _, err := e.cli.ClearFaults(ctx); err != nil {
		return fmt.Errorf("ClearFaults: %w", err)
	}
	for i, id := range ids {
		r.injected += injected[id]
		if injected[id] == 0 {
			r.problems = append(r.problems, fmt.Sprintf("fault %s (%s %s) was never injected: the class was not exercised", id, c.Faults[i].Kind, c.Faults[i].Packet))
		}
	}

	// Settle: every alarm delivered, the shadow converged, every job ended.
	settleStart := time.Now()
	var why string
	err = poll(ctx, o.settleLimit, "the agent to settle", func() (bool, error) {
		if err := e.agent.alive(); err != nil {
			return false, err
		}
		for _, k := range r.keys {
			if e.obs.count(k) == 0 {
				why = fmt.Sprintf("alarm %s@%d not delivered", k.sensor, k.ts)
				return false, nil
			}
		}
		ok, diff, err := e.converged(ctx, w.want)
		if err != nil {
			return false, err
		}
		if !ok {
			why = "shadow: " + diff
			return false, nil
		}
		for id := range jobs {
			st, det, err := e.jobStatus(ctx, id)
			if err != nil {
				return false, err
			}
			if !terminal(st) {
				why = fmt.Sprintf("job %s %s %v", id, st, det)
				return false, nil
			}
		}
		return true, nil
	})
	took := time.Since(settleStart)
	r.settle += took
	r.maxSettle = max(r.maxSettle, took)
	if err != nil {
		if aerr := e.agent.alive(); aerr != nil {
			return aerr
		}
		r.problems = append(r.problems, fmt.Sprintf("round %d: not settled within %s: %s", round, o.settleLimit, why))
	}
	// What settled, and what did not, is counted either way.
	if ok, diff, err := e.converged(ctx, w.want); err == nil && ok {
		r.shadowOK++
	} else if err == nil && !strings.Contains(why, diff) {
		r.problems = append(r.problems, "shadow: "+diff)
	}
	for id, want := range jobs {
		st, det, err := e.jobStatus(ctx, id)
		switch {
		case err != nil:
			return err
		case st == want:
			r.jobsDone++
		case terminal(st):
			r.problems = append(r.problems, fmt.Sprintf("job %s ended %s, want %s (%v)", id, st, want, det))
		}
	}
	r.telemetry += e.obs.telemetry.Load() - tel0
	r.warnings += e.obs.warnings.Load() - warn0
	return nil
}

func terminal(status string) bool {
	switch status {
	case "SUCCEEDED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT", "REMOVED":
		return true
	}
	return false
}

// selected is the classes the run covers: "none" first, always.
func selected(o opts) []broker.FaultClass {
	var out []broker.FaultClass
	for _, c := range broker.FaultClasses {
		if c.Name == "none" || o.only == nil || o.only.MatchString(c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// run sets up, runs the chaos or the soak, prints the table and returns a
// *failed when a check failed.
func run(ctx context.Context, o opts) error {
	begin := time.Now()
	dir, err := os.MkdirTemp("", "iotagent-chaos-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	cls := selected(o)
	active := o.classTime
	if active == 0 {
		if o.soak > 0 {
			active = 20 * time.Second
		} else {
			// Half the budget for the classes' active time, half for
			// settling (measured: a few seconds each, up to the ack and
			// request timeouts).
			active = min(max(o.total/time.Duration(2*len(cls)), 2*time.Second), 30*time.Second)
		}
	}
	desired := desiredState(0)
	e, err := setUp(ctx, o, dir, desired)
	if err != nil {
		if e != nil {
			err = fmt.Errorf("%w%s", err, e.logs())
			_ = e.tearDown()
		}
		return err
	}
	w, err := newWork(ctx, e, desired)
	if err != nil {
		_ = e.tearDown()
		return fmt.Errorf("%w%s", err, e.logs())
	}
	mode := fmt.Sprintf("chaos: %d fault classes, %s each", len(cls), active)
	if o.soak > 0 {
		mode = fmt.Sprintf("soak: %s of rounds of %d fault classes, %s each; RSS sampled every %s, the first %s left out", o.soak, len(cls), active, o.sample, o.warmup)
	}
	fmt.Printf("%s; alarms every %s, desired state every %s, 2 jobs per class; agent pid %d (setup took %s)\n",
		mode, o.alarmEvery, o.desiredEvery, e.agent.pid(), time.Since(begin).Round(time.Second))

	rows := map[string]*row{}
	var order []string
	var problems []string
	var samples []sample
	var base sample
	sampler := make(chan struct{})
	samplerDone := make(chan struct{})
	runErr := func() error {
		round := 0
		for {
			for i, c := range cls {
				r := rows[c.Name]
				if r == nil {
					r = &row{class: c.Name}
					rows[c.Name] = r
					order = append(order, c.Name)
				}
				if err := w.phase(ctx, o, c, round, active, r); err != nil {
					return err
				}
				if o.soak == 0 {
					fmt.Printf("  %-20s %3d alarms, settled in %s\n", c.Name, r.raised, r.maxSettle.Round(100*time.Millisecond))
				}
				if round == 0 && i == 0 {
					// The baseline: after a class without faults.
					var err error
					if base, err = e.quietSample(ctx); err != nil {
						return err
					}
					if o.soak > 0 {
						go func() {
							defer close(samplerDone)
							t := time.NewTicker(o.sample)
							defer t.Stop()
							for {
								select {
								case <-sampler:
									return
								case <-t.C:
									if s, err := e.sample(ctx); err == nil {
										samples = append(samples, s)
									}
								}
							}
						}()
					}
				}
				if o.soak > 0 && time.Since(begin) >= o.soak {
					return nil
				}
			}
			round++
			if o.soak == 0 {
				return nil
			}
			fmt.Printf("  round %d done at %s\n", round, time.Since(begin).Round(time.Second))
		}
	}()
	if o.soak > 0 && base.at != (time.Time{}) {
		close(sampler)
		<-samplerDone
	}
	if runErr != nil {
		_ = e.tearDown()
		return fmt.Errorf("%w%s", runErr, e.logs())
	}

	// The end: a quiet agent, compared with the baseline.
	time.Sleep(5 * time.Second)
	end, err := e.quietSample(ctx)
	if err != nil {
		_ = e.tearDown()
		return err
	}
	problems = append(problems, e.selfReport(ctx)...)
	var st localapi.Outbox
	if err := e.local.Get(ctx, localapi.SectionOutbox, &st); err != nil {
		problems = append(problems, "local API outbox: "+err.Error())
	} else if st.DroppedAlarm > 0 || st.Quarantined > 0 || st.Corrupt > 0 {
		problems = append(problems, fmt.Sprintf("outbox: %d alarms dropped, %d messages quarantined, %d corrupt", st.DroppedAlarm, st.Quarantined, st.Corrupt))
	}
	if n := e.obs.unexpected(w.raised); n > 0 {
		problems = append(problems, fmt.Sprintf("%d alarm messages the run did not raise (or without sensor and timestamp)", n))
	}
	if n := e.obs.lost.Load(); n > 0 {
		problems = append(problems, fmt.Sprintf("the observer lost its connection %d times: counts may be short", n))
	}
	for _, name := range order {
		r := rows[name]
		r.delivered, r.duplicates = e.obs.tally(r.keys)
		if r.lost() > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d of %d alarms lost", name, r.lost(), r.raised))
		}
		if r.duplicates > r.raised {
			problems = append(problems, fmt.Sprintf("%s: %d duplicates of %d alarms (bound: one per alarm)", name, r.duplicates, r.raised))
		}
		for _, p := range r.problems {
			problems = append(problems, name+": "+p)
		}
	}
	printTable(os.Stdout, order, rows)
	problems = append(problems, resources(os.Stdout, o, base, end, samples)...)
	if err := e.tearDown(); err != nil {
		problems = append(problems, err.Error())
	}
	fmt.Printf("\n%s in %s\n", map[bool]string{true: "PASS", false: "FAIL"}[len(problems) == 0], time.Since(begin).Round(time.Second))
	if len(problems) > 0 {
		return &failed{reasons: append(problems, e.logs())}
	}
	return nil
}

// selfReport checks what the agent says about itself at the end, when the
// cloud has settled: healthy, connected, every subscription acknowledged,
// the shadow in sync, no job running or in flight, nothing degraded. A
// recovered agent that still reports trouble misreports.
func (e *env) selfReport(ctx context.Context) []string {
	var problems []string
	var ag localapi.Agent
	var conn localapi.Connection
	var sh localapi.Shadow
	var jobs localapi.Jobs
	for _, g := range []struct {
		name string
		v    any
	}{{localapi.SectionAgent, &ag}, {localapi.SectionConnection, &conn}, {localapi.SectionShadow, &sh}, {localapi.SectionJobs, &jobs}} {
		if err := e.local.Get(ctx, g.name, g.v); err != nil {
			return append(problems, fmt.Sprintf("local API %s: %v", g.name, err))
		}
	}
	if !ag.Healthy || len(ag.Degraded) > 0 {
		problems = append(problems, fmt.Sprintf("the agent reports itself unhealthy or degraded at the end: %q %q", ag.Unhealthy, ag.Degraded))
	}
	if !conn.Connected || conn.Subscribed != conn.Subscriptions {
		problems = append(problems, fmt.Sprintf("the agent reports connected %v with %d of %d subscriptions at the end (last error %q)",
			conn.Connected, conn.Subscribed, conn.Subscriptions, conn.LastError))
	}
	if !sh.InSync || !sh.FetchedLive || len(sh.Problems) > 0 {
		problems = append(problems, fmt.Sprintf("the agent reports its shadow in sync %v (fetched live %v, pending %q, problems %q, cloud error %q) at the end",
			sh.InSync, sh.FetchedLive, sh.Pending, sh.Problems, sh.CloudError))
	}
	if jobs.Current != nil || jobs.InFlight != nil {
		problems = append(problems, fmt.Sprintf("the agent reports a job running (%+v) or in flight (%+v) at the end", jobs.Current, jobs.InFlight))
	}
	return problems
}

// logs is the end of the agent's and iotsim's logs, for a failure.
func (e *env) logs() string {
	var b strings.Builder
	if e.agent != nil {
		fmt.Fprintf(&b, "\n--- iotagent log (%s), its end ---\n%s", e.agent.logPath, e.agent.tail(6000))
	}
	if e.sim != nil {
		fmt.Fprintf(&b, "\n--- iotsim log (%s), its end ---\n%s", e.sim.logPath, e.sim.tail(2000))
	}
	return b.String()
}

// printTable prints one line per fault class and a total.
func printTable(out io.Writer, order []string, rows map[string]*row) {
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault class\trounds\tinjected\talarms raised\tdelivered\tlost\tduplicates\ttelemetry\tdesired changes\tshadow converged\tjobs ended right\tsettle max\t")
	var t row
	for _, name := range order {
		r := rows[name]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d/%d\t%d/%d\t%s\t\n", name, r.rounds, r.injected, r.raised, r.delivered, r.lost(),
			r.duplicates, r.telemetry, r.desired, r.shadowOK, r.rounds, r.jobsDone, r.jobs, r.maxSettle.Round(100*time.Millisecond))
		t.rounds += r.rounds
		t.injected += r.injected
		t.raised += r.raised
		t.delivered += r.delivered
		t.duplicates += r.duplicates
		t.telemetry += r.telemetry
		t.desired += r.desired
		t.shadowOK += r.shadowOK
		t.jobs += r.jobs
		t.jobsDone += r.jobsDone
		t.maxSettle = max(t.maxSettle, r.maxSettle)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d/%d\t%d/%d\t%s\t\n", t.rounds, t.injected, t.raised, t.delivered, t.lost(),
		t.duplicates, t.telemetry, t.desired, t.shadowOK, t.rounds, t.jobsDone, t.jobs, t.maxSettle.Round(100*time.Millisecond))
	tw.Flush()
}

// resources prints the agent's goroutines, open files and RSS at the
// baseline and at the end (and, for a soak, the RSS drift after the
// warm-up) and returns the checks that failed.
func resources(out io.Writer, o opts, base, end sample, samples []sample) []string {
	var problems []string
	mib := func(k int64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }
	fmt.Fprintf(out, "\nagent goroutines %d -> %d, open files %d -> %d, RSS %s -> %s (baseline after the class without faults -> the end, quiet)\n",
		base.goroutines, end.goroutines, base.fds, end.fds, mib(base.rssKiB), mib(end.rssKiB))
	if d := end.goroutines - base.goroutines; d > o.goroutineNoise {
		problems = append(problems, fmt.Sprintf("goroutines grew by %d (noise: %d)", d, o.goroutineNoise))
	}
	if d := end.fds - base.fds; d > o.fdNoise {
		problems = append(problems, fmt.Sprintf("open files grew by %d (noise: %d)", d, o.fdNoise))
	}
	if o.soak == 0 {
		if d := end.rssKiB - base.rssKiB; d > o.rssNoise {
			problems = append(problems, fmt.Sprintf("RSS grew by %s (noise: %s)", mib(d), mib(o.rssNoise)))
		}
		return problems
	}
	var after []int64
	var first time.Time
	for _, s := range samples {
		if s.at.Sub(base.at) >= o.warmup {
			if first.IsZero() {
				first = s.at
			}
			after = append(after, s.rssKiB)
		}
	}
	lo, hi := int64(0), int64(0)
	if len(after) > 0 {
		lo, hi = slices.Min(after), slices.Max(after)
	}
	f, l, d, ok := drift(after)
	if !ok {
		problems = append(problems, fmt.Sprintf("RSS drift: %d samples after the %s warm-up, need 6 (a longer --soak or a shorter --warmup)", len(after), o.warmup))
		return problems
	}
	span := samples[len(samples)-1].at.Sub(first).Round(time.Second)
	fmt.Fprintf(out, "RSS after the warm-up: %d samples over %s, min %s, max %s; median of the first tenth %s, of the last %s: drift %+.2f MiB (goal under 1 MiB)\n",
		len(after), span, mib(lo), mib(hi), mib(f), mib(l), float64(d)/1024)
	if o.maxRSSDrift > 0 && d > o.maxRSSDrift {
		problems = append(problems, fmt.Sprintf("RSS drift %+.2f MiB over %s, more than %s", float64(d)/1024, span, mib(o.maxRSSDrift)))
	}
	return problems
}
