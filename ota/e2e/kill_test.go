package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudjobs "github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/ota"
	"github.com/iotagent/iotagent/ota/otatest"
)

// killPoints are where a run kills the agent; run i uses killPoints[i %
// len]:
//
//	download  when iotsim has sent a random share of the artifact
//	verify, stage, apply, confirm, committed
//	          as soon as state.json shows that state (or a later one)
//	trial     a random delay after v2 was started on trial, shorter than
//	          the shortest start -> READY=1 of v2 seen so far
//	ready     when v2 says READY=1 (it commits at the same moment)
//	time      a random delay within the update window measured so far
var killPoints = []string{"download", "verify", "stage", "apply", "confirm", "trial", "ready", "committed", "time"}

var stateOrder = map[ota.State]int{ota.Idle: 0, ota.Download: 1, ota.Verify: 2, ota.Stage: 3, ota.Apply: 4, ota.Confirm: 5, ota.Committed: 6, ota.RolledBack: 6}

// killStats sums up the runs.
type killStats struct {
	mu       sync.Mutex
	at       map[string]int // where kills landed: "point -> slot version/state"
	outcomes map[string]int
	ranged   int           // runs whose artifact was resumed with a Range request
	window   time.Duration // the shortest job creation -> terminal seen: the update window
	trialDur time.Duration // the shortest start -> READY=1 of v2 seen
}

func (s *killStats) trial() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trialDur
}

// updateTrial takes the time from v2's first start to its READY=1.
func (s *killStats) updateTrial(d *device) {
	evs := d.sup.Events()
	for _, st := range evs {
		if st.Kind != otatest.Started || st.Slot != "b" {
			continue
		}
		for _, r := range evs[st.Seq:] {
			if r.Start == st.Start && r.Kind == otatest.Ready {
				s.mu.Lock()
				s.trialDur = min(s.trialDur, r.At.Sub(st.At))
				s.mu.Unlock()
				return
			}
		}
	}
}

func (s *killStats) add(m map[string]int, k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m[k]++
}

func (s *killStats) updateWindow(d time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.window = min(s.window, d)
	return s.window
}

// TestKillNineDuringUpdate kills the agent with SIGKILL at a random point
// of a whole update (download, verify, stage, apply, the switch, the
// trial, the commit), lets the supervisor restart it, and asserts that
// every run ends with a terminal job status (SUCCEEDED, or FAILED with a
// reason) and one working slot: the agent started from STATE/ota/current
// is connected and that binary answers with the version the outcome
// implies. Each run is its own thing and state dir on one iotsim; jobs
// are created and artifacts uploaded through iotsim's Go API (50 runs of
// the aws CLI would cost a minute of CPU; TestUpdate covers the CLI).
func TestKillNineDuringUpdate(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, false)
	data := readFile(t, agentBinary(t, v2, ""))
	base := releaseOf(t, w.key, v2, "", data)
	stats := &killStats{at: map[string]int{}, outcomes: map[string]int{}, window: time.Second, trialDur: 200 * time.Millisecond}
	runs := *killRuns
	work := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for range max(*killPar, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// Subtests run from several goroutines at once (not
				// t.Parallel, which -parallel would limit to GOMAXPROCS).
				if !t.Run(fmt.Sprintf("run%03d-%s", i, killPoints[i%len(killPoints)]), func(t *testing.T) {
					killRun(t, w, stats, i, data, base)
				}) {
					failed.Store(true)
				}
			}
		}()
	}
	for i := 0; i < runs && !failed.Load(); i++ {
		work <- i
	}
	close(work)
	wg.Wait()

	keys := make([]string, 0, len(stats.at))
	for k := range stats.at {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-50s %d", k, stats.at[k])
	}
	t.Logf("%d updates, %d at once; outcomes %v; %d resumed a download with a Range request; kills aimed at -> landed at (the running agent's slot and version/the state in state.json):%s",
		runs, *killPar, stats.outcomes, stats.ranged, b.String())
	if runs >= 50 && !failed.Load() {
		if len(stats.at) < 6 {
			t.Errorf("kills landed at only %d distinct points: %v", len(stats.at), stats.at)
		}
		if stats.ranged == 0 {
			t.Error("no killed download was resumed with a Range request")
		}
	}
}

func killRun(t *testing.T, w *world, stats *killStats, i int, data []byte, base release) {
	point := killPoints[i%len(killPoints)]
	thing := fmt.Sprintf("kill-%03d", i)
	jobID := thing + "-job"
	rel := base
	rel.Key = fmt.Sprintf("iotagent-2.0.0-%03d", i)
	w.upload(t, rel.Key, data)
	d := w.newDevice(t, thing, deviceOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	landed := make(chan string, 1)
	var once sync.Once
	kill := func() {
		once.Do(func() {
			// Where it lands: the slot and version of the agent running
			// now, and the state it persisted last.
			running := "-"
			if evs := d.events(otatest.Started); len(evs) > 0 {
				e := evs[len(evs)-1]
				running = e.Slot + " " + e.Version
			}
			if _, ok := d.sup.Kill(); !ok {
				landed <- "no agent running"
				return
			}
			var st ota.Status
			if err := jsonFile(ota.NewLayout(d.state).Dir+"/state.json", &st); err != nil {
				landed <- running + "/unreadable state: " + err.Error()
				return
			}
			landed <- running + "/" + string(st.State)
		})
	}
	switch point {
	case "download":
		at := int64(float64(rel.Size) * (0.02 + 0.96*rand.Float64()))
		w.objects.rule(rel.Key, &objectRule{onSent: func(sent int64, n int) {
			if n == 1 && sent >= at {
				kill()
			}
		}})
	case "verify", "stage", "apply", "confirm", "committed":
		// No event marks these steps (they take milliseconds and persist
		// state.json before each): poll it, 1 ms apart, and kill at the
		// first sight of the state or a later one.
		want := stateOrder[ota.State(point)]
		go func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				var st ota.Status
				if jsonFile(ota.NewLayout(d.state).Dir+"/state.json", &st) == nil && st.JobID == jobID && stateOrder[st.State] >= want {
					kill()
					return
				}
			}
		}()
	case "trial", "ready":
		go func() {
			k := otatest.Started
			if point == "ready" {
				k = otatest.Ready
			}
			if _, err := d.sup.Wait(ctx, 0, func(e otatest.Event) bool { return e.Kind == k && e.Slot == "b" }); err != nil {
				return
			}
			if point == "trial" {
				// The kill point is random: a delay here picks it, it does
				// not wait for anything.
				timer := time.NewTimer(time.Duration(rand.IntN(int(stats.trial().Milliseconds())+1)) * time.Millisecond)
				defer timer.Stop()
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
			kill()
		}()
	}
	created := w.createJob(t, jobID, thing, rel.document())
	if point == "time" {
		stats.mu.Lock()
		window := stats.window
		stats.mu.Unlock()
		timer := time.AfterFunc(time.Duration(rand.Int64N(int64(window))), kill)
		defer timer.Stop()
	}

	e, err := w.waitJob(ctx, thing, jobID)
	if err != nil {
		t.Fatal(err)
	}
	// Disarm: a kill after the job ended would race with the checks.
	once.Do(func() { landed <- "no kill: the job ended first" })
	stats.add(stats.at, fmt.Sprintf("%-8s -> %s", point, <-landed))
	stats.updateWindow(e.LastUpdatedAt.Sub(created))
	stats.updateTrial(d)
	stats.add(stats.outcomes, e.Status)
	want := v2
	switch {
	case e.Status == cloudjobs.StatusSucceeded:
	case e.Status == cloudjobs.StatusFailed && e.StatusDetails["reason"] != "":
		want = v1
		t.Logf("FAILED: %s", e.StatusDetails["reason"])
	default:
		t.Fatalf("job %s %v, want SUCCEEDED or FAILED with a reason", e.Status, e.StatusDetails)
	}
	got, err := d.runningVersion(ctx)
	if err != nil || got != want {
		t.Fatalf("running version %q, %v; want %s after %s", got, err, want, e.Status)
	}
	if st := d.otaState(t); !st.State.Terminal() || st.ActiveVersion != want {
		t.Fatalf("ota state %s, active %s (%s); want a terminal state with %s active", st.State, st.Active, st.ActiveVersion, want)
	}
	for _, r := range w.objects.requests(rel.Key) {
		if strings.HasPrefix(r.Range, "bytes=") && r.Status == 206 {
			stats.mu.Lock()
			stats.ranged++
			stats.mu.Unlock()
			break
		}
	}
	d.sup.Stop()
}
