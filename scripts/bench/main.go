// Command bench measures the agent's footprint and latency and iotsim's
// scale on this machine and writes the results into BENCHMARKS.md, between
// its generated-section markers. `make bench` runs it after building.
//
// Every measurement is a named step; -steps picks some. iotsim runs in
// this process (cloud.Start) so that its side can be observed through
// Broker().Handle and Shadows(); the agent is the real bin/iotagent in its
// own process. For the scale, provisioning and jobs steps iotsim is the
// real bin/iotsim, and this process is the load generator (hand-made MQTT
// over mutual TLS); the ota step runs the agent under ota/otatest's
// Supervisor, as systemd would. Only loopback addresses are used; every
// loop is bounded in count and time. The tool measures and reports: it
// fails only when it cannot measure, never because of a figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const module = "github.com/iotagent/iotagent"

type opts struct {
	bin, dist, config, out string
	steps                  map[string]bool
	runs                   int
	startRuns              int
	idleSettle, idleWindow time.Duration
	deltas                 int
	deltaLimit             time.Duration
	edges                  int
	edgeLimit              time.Duration
	debounceMs             int
	outboxN                int
	drainWindow            time.Duration
	devices                int
	issueLimit             time.Duration
	connectLimit           time.Duration
	shadowConns            int
	shadowWindow           time.Duration
	provN, provParallel    int
	provBatch              int
	provLimit              time.Duration
	jobDevices, jobRuns    int
	otaSize                int64
	otaLimit               time.Duration
	benchCount             int
	benchTime              string
	command                string
	agentEnv               []string // extra KEY=VALUE for every iotagent
}

// step is one named measurement; reason != "" means not yet measurable.
type step struct {
	name, what, reason string
}

var allSteps = []step{
	{name: "sizes", what: "binary sizes per architecture"},
	{name: "gobench", what: "Go benchmarks of the hot paths"},
	{name: "startup", what: "process start → connected → shadow synced"},
	{name: "idle", what: "agent idle RSS/PSS, CPU, threads, goroutines"},
	{name: "idle-1s", what: "idle with one more part read every second: CPU and RSS, CPU per read"},
	{name: "delta", what: "shadow delta → reported round trip"},
	{name: "gpio", what: "simulated GPIO edge → alarm PUBACK"},
	{name: "outbox", what: "10,000 QoS1 messages offline, then drain"},
	{name: "scale", what: "iotsim connections, memory per connection, shadow updates/s"},
	{name: "provisioning", what: "fleet provisioning completions per second (CSR path)"},
	{name: "jobs", what: "jobs dispatched and executions completed per second"},
	{name: "ota", what: "OTA: 10 MB artifact from job creation to SUCCEEDED, peak RSS"},
}

// benchPkgs are the packages whose benchmarks cover the hot paths.
var benchPkgs = []string{"./agent/...", "./cloud", "./cloud/shadow", "./cloud/broker", "./cloud/policy", "./ota", "./sensors/..."}

func main() {
	o := &opts{}
	flag.StringVar(&o.bin, "bin", "bin", "directory with iotagent and iotsim (make build)")
	flag.StringVar(&o.dist, "dist", "dist", "directory with the cross-built iotagent binaries (make cross)")
	flag.StringVar(&o.config, "config", "configs/chocolate-box.json", "agent config")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "report to update between its markers; \"\" prints to stdout")
	stepList := flag.String("steps", "all", "comma-separated steps to run, or all")
	quick := flag.Bool("quick", false, "small counts and short windows: a smoke run of every step in about a minute")
	flag.IntVar(&o.runs, "runs", 3, "repeats of the latency steps")
	flag.IntVar(&o.devices, "devices", 10000, "simulated devices for the scale step")
	flag.IntVar(&o.provN, "prov-devices", 2500, "devices the provisioning step provisions")
	flag.IntVar(&o.provParallel, "prov-parallel", 32, "devices provisioned at once")
	flag.IntVar(&o.jobDevices, "job-devices", 1000, "connected devices the jobs step targets")
	flag.IntVar(&o.benchCount, "bench-count", 5, "go test -count for the Go benchmarks")
	flag.StringVar(&o.benchTime, "bench-time", "200ms", "go test -benchtime")
	flag.Func("agent-env", "KEY=VALUE added to every iotagent's environment, e.g. GOGC=50 (repeatable)", func(s string) error {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", s)
		}
		o.agentEnv = append(o.agentEnv, s)
		return nil
	})
	flag.Parse()
	o.startRuns, o.idleSettle, o.idleWindow = 5, 30*time.Second, 60*time.Second
	o.deltas, o.deltaLimit = 1000, 60*time.Second
	o.edges, o.edgeLimit, o.debounceMs = 100, 60*time.Second, 50
	o.outboxN, o.drainWindow = 10000, 20*time.Second
	o.issueLimit, o.connectLimit = 150*time.Second, 120*time.Second
	o.shadowConns, o.shadowWindow = 64, 10*time.Second
	o.provBatch, o.provLimit = 500, 60*time.Second
	o.jobRuns = 3
	o.otaSize, o.otaLimit = 10<<20, 120*time.Second
	if *quick {
		o.runs, o.startRuns, o.idleSettle, o.idleWindow = 1, 2, 2*time.Second, 3*time.Second
		o.deltas, o.edges, o.outboxN, o.drainWindow = 50, 10, 500, 4*time.Second
		o.devices, o.shadowWindow, o.benchCount, o.benchTime = min(o.devices, 200), 2*time.Second, 1, "20ms"
		o.provN, o.provBatch, o.jobDevices, o.jobRuns = min(o.provN, 100), 50, min(o.jobDevices, 50), 1
	}
	o.command = commandLine(os.Args[1:], os.Getenv("MAKELEVEL") != "")
	o.steps = map[string]bool{}
	for _, s := range strings.Split(*stepList, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.steps[s] = true
		}
	}
	for s := range o.steps {
		if s != "all" && !known(s) {
			fmt.Fprintf(os.Stderr, "bench: unknown step %q\n", s)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// commandLine is how the report says it was made: `make bench` (with
// its BENCHFLAGS) when make ran it, else the go run command.
func commandLine(args []string, underMake bool) string {
	if !underMake {
		return strings.TrimSpace("go run ./scripts/bench " + strings.Join(args, " "))
	}
	var extra []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--bin" || a == "--dist" || a == "--out" || a == "-bin" || a == "-dist" || a == "-out":
			i++ // and its value
		case strings.HasPrefix(a, "--bin=") || strings.HasPrefix(a, "--dist=") || strings.HasPrefix(a, "--out="):
		default:
			extra = append(extra, a)
		}
	}
	if len(extra) == 0 {
		return "make bench"
	}
	return fmt.Sprintf("make bench BENCHFLAGS=%q", strings.Join(extra, " "))
}

func known(name string) bool {
	for _, s := range allSteps {
		if s.name == name {
			return true
		}
	}
	return false
}

func (o *opts) want(name string) bool { return o.steps["all"] || o.steps[name] }

func run(ctx context.Context, o *opts) error {
	start := time.Now()
	o.bin, _ = filepath.Abs(o.bin)
	for _, b := range []string{"iotagent", "iotsim"} {
		if _, err := os.Stat(filepath.Join(o.bin, b)); err != nil {
			return fmt.Errorf("%s: %w (run make build)", b, err)
		}
	}
	tmp, err := os.MkdirTemp("", "iotbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	r := &Report{Command: o.command, Machine: machine(o)}
	add := func(m Metric) {
		s := summarize(m.Samples)
		fmt.Printf("    %-10s %-45s median %s %s (min %s, max %s, n %d)\n", m.Step, m.Name, fmtNum(s.Median), m.Unit, fmtNum(s.Min), fmtNum(s.Max), s.N)
		r.Metrics = append(r.Metrics, m)
	}
	fail := func(name string, err error) {
		msg := fmt.Sprintf("%s: %v", name, err)
		if len(msg) > 600 {
			msg = msg[:600] + "..."
		}
		fmt.Println("    FAILED", msg)
		r.Failures = append(r.Failures, msg)
	}
	begin := func(name string) bool {
		if !o.want(name) || ctx.Err() != nil {
			return false
		}
		fmt.Printf("==> %s (%s elapsed)\n", name, time.Since(start).Round(time.Second))
		return true
	}
	for _, s := range allSteps {
		if s.reason != "" && o.want(s.name) {
			r.NotYet = append(r.NotYet, NotYet{Name: s.what, Reason: s.reason})
		}
	}

	if begin("sizes") {
		if err := sizes(o, add); err != nil {
			fail("sizes", err)
		}
	}
	if begin("gobench") {
		g, err := runGoBench(ctx, benchPkgs, o.benchCount, o.benchTime, filepath.Join(tmp, "gobench.txt"))
		if err != nil {
			fail("gobench", err)
		}
		r.GoBench = g
		fmt.Printf("    %d benchmarks\n", len(g))
	}
	if o.want("startup") || o.want("idle") || o.want("idle-1s") || o.want("delta") || o.want("gpio") || o.want("outbox") {
		ab := &agentBench{o: o, tmp: tmp, add: add}
		if err := ab.setup(); err != nil {
			fail("agent setup", err)
		} else {
			needAgent := o.want("idle") || o.want("delta") || o.want("gpio")
			if begin("startup") || (needAgent && ctx.Err() == nil) {
				if err := ab.startup(ctx); err != nil {
					fail("startup", err)
				}
			}
			if begin("idle") {
				if err := ab.idle(ctx); err != nil {
					fail("idle", err)
				}
			}
			if begin("delta") {
				if err := ab.deltaRoundTrip(ctx); err != nil {
					fail("delta", err)
				}
			}
			if begin("gpio") {
				if err := ab.gpioAlarm(ctx); err != nil {
					fail("gpio", err)
				}
			}
			if o.want("idle") && ab.agent != nil {
				if err := ab.goroutines(); err != nil {
					fail("goroutines", err)
				}
			}
			if ab.agent != nil {
				_ = ab.agent.stop()
				ab.agent = nil
			}
			if begin("idle-1s") {
				if err := ab.idle1s(ctx); err != nil {
					fail("idle-1s", err)
				}
			}
			if o.want("gpio") && ctx.Err() == nil {
				fmt.Println("==> gpio with debounce_ms 1")
				if err := ab.gpioDebounce1(ctx); err != nil {
					fail("gpio (debounce 1 ms)", err)
				}
			}
			if begin("outbox") {
				if err := ab.outboxDrain(ctx); err != nil {
					fail("outbox", err)
				}
			}
		}
		ab.close()
	}
	if begin("scale") {
		if err := scale(ctx, o, tmp, add); err != nil {
			fail("scale", err)
		}
	}
	if begin("provisioning") {
		if err := provisioning(ctx, o, tmp, add); err != nil {
			fail("provisioning", err)
		}
	}
	if begin("jobs") {
		if err := jobsDispatch(ctx, o, tmp, add); err != nil {
			fail("jobs", err)
		}
	}
	if begin("ota") {
		if err := otaUpdate(ctx, o, tmp, add); err != nil {
			fail("ota", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w (report not written)", err)
	}
	r.Machine = append(r.Machine, fmt.Sprintf("run took: %v", time.Since(start).Round(time.Second)))
	md := r.Markdown()
	if o.out == "" {
		fmt.Print(md)
		return nil
	}
	doc, err := os.ReadFile(o.out)
	if err != nil {
		return err
	}
	updated, err := replaceGenerated(doc, md)
	if err != nil {
		return fmt.Errorf("%s: %w", o.out, err)
	}
	if err := os.WriteFile(o.out, updated, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s in %v (%d metrics, %d Go benchmarks, %d failed steps)\n", o.out, time.Since(start).Round(time.Second), len(r.Metrics), len(r.GoBench), len(r.Failures))
	return nil
}

// sizes reports the stripped static iotagent for each architecture.
func sizes(o *opts, add func(Metric)) error {
	found := 0
	for _, a := range []struct{ file, arch, target string }{
		{"iotagent-linux-armv6", "armv6", ""},
		{"iotagent-linux-armv7", "armv7", ""},
		{"iotagent-linux-arm64", "arm64", "≤ 8 MB"},
		{"iotagent-linux-amd64", "amd64", ""},
	} {
		fi, err := os.Stat(filepath.Join(o.dist, a.file))
		if err != nil {
			continue
		}
		found++
		add(Metric{Step: "size", Name: "iotagent " + a.arch, Unit: "MiB", Samples: []float64{float64(fi.Size()) / (1 << 20)},
			Target: a.target, Note: fmt.Sprintf("%d bytes, static, -s -w (make cross)", fi.Size())})
	}
	if fi, err := os.Stat(filepath.Join(o.bin, "iotsim")); err == nil {
		add(Metric{Step: "size", Name: "iotsim " + runtime.GOARCH, Unit: "MiB", Samples: []float64{float64(fi.Size()) / (1 << 20)},
			Note: fmt.Sprintf("%d bytes (make build)", fi.Size())})
	}
	if found == 0 {
		return fmt.Errorf("no iotagent-linux-* in %s (run make cross)", o.dist)
	}
	return nil
}

// machine describes where the figures come from.
func machine(o *opts) []string {
	var out []string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				out = append(out, "cpu: "+strings.TrimSpace(v))
				break
			}
		}
	}
	out = append(out, fmt.Sprintf("cores: %d (shared, noisy)", runtime.NumCPU()))
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if l, _, ok := strings.Cut(string(b), "\n"); ok {
			out = append(out, "memory: "+strings.Join(strings.Fields(strings.TrimPrefix(l, "MemTotal:")), " "))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		out = append(out, "kernel: "+strings.TrimSpace(string(b)))
	}
	out = append(out, "go: "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH)
	if b, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		out = append(out, "commit: "+strings.TrimSpace(string(b)))
	}
	if len(o.agentEnv) > 0 {
		out = append(out, "agent environment: "+strings.Join(o.agentEnv, " "))
	}
	out = append(out, "date: "+time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	out = append(out, fmt.Sprintf("counts: %d runs of %d deltas and %d edges; %d devices; %d provisioned, %d at once; %d job devices, %d jobs; go test -count %d -benchtime %s",
		o.runs, o.deltas, o.edges, o.devices, o.provN, o.provParallel, o.jobDevices, o.jobRuns, o.benchCount, o.benchTime))
	return out
}
