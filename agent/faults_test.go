package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	cloudjobs "github.com/iotagent/iotagent/cloud/jobs"
)

// faultLimit bounds each fault class's run: the agent's own retries must
// fit, on a loaded machine (the jobs runner's longest round: 15 s for the
// subscriptions, 15 s for an answer, then a retry up to 30 s later).
const faultLimit = 90 * time.Second

// logTail keeps the agent's log of a run, shown when the test fails.
type logTail struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 {
		l.b.Reset()
		l.b.WriteString("[earlier lines dropped]\n")
	}
	return l.b.Write(p)
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > 64<<10 {
		s = "…" + s[len(s)-64<<10:]
	}
	return s
}

// faultRun is the outcome of one run of the agent under faults.
type faultRun struct {
	raised, delivered, duplicates int
	injected                      map[string]int64
}

// faultEnv is where a run happens; the zero value is iotsim on loopback.
type faultEnv struct {
	// sim starts iotsim (nil: cloudtest.Start).
	sim func(t *testing.T) *cloud.Sim
	// serverName is the name the agent checks iotsim's certificate
	// against when it connects to an IP address the certificate lacks.
	serverName string
	// during, if set, disturbs the run between its two rounds of work;
	// it must call raise (the second round's alarms) once.
	during func(t *testing.T, d *device, raise func())
}

// runUnderFaults starts iotsim and the agent, adds the faults through the
// REST API, then raises alarms, changes desired state and queues jobs, and
// waits until every alarm arrived, the shadow converged to the last
// desired state and every job is terminal. It fails the test on a lost
// alarm, a shadow that does not converge or a job that does not end.
func runUnderFaults(t *testing.T, thing string, faults []broker.Fault, opt agent.Options, env faultEnv) faultRun {
	t.Helper()
	var sim *cloud.Sim
	if env.sim != nil {
		sim = env.sim(t)
	} else {
		sim = cloudtest.Start(t, "")
	}
	obs := observe(sim, thing)
	d := newDevice(t, sim, thing)
	d.cfg.MQTT.ServerName = env.serverName
	d.cfg.Alarm.Armed = true
	d.cfg.MQTT.BackoffMaxS = 1
	d.cfg.MQTT.ConnectTimeoutS = 2
	body := []byte("praline recipe\n")
	if _, err := sim.Objects().Put("files", "recipes/"+thing+".txt", "text/plain", bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	dlDir := filepath.Join(t.TempDir(), "files")
	if err := os.MkdirAll(dlDir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.cfg.Jobs.DownloadDirs = []string{dlDir}
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	opt.Now = func() time.Time { return time.Unix(clock.Add(1), 0) }
	if opt.AckTimeout == 0 {
		opt.AckTimeout = 2 * time.Second
	}
	logs := &logTail{}
	opt.Logger = slog.New(slog.NewTextHandler(logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log (tail):\n%s", logs)
		}
	})
	if opt.AuthBackoffMin == 0 {
		opt.AuthBackoffMin = 100 * time.Millisecond
	}
	d.start(t, opt)
	waitFor(t, "first report", obs.reported, func(map[string]any) bool { return true })

	ctx, cancel := context.WithTimeout(context.Background(), faultLimit)
	defer cancel()
	var ids []string
	for _, f := range faults {
		st, err := sim.Client().AddFault(ctx, f)
		if err != nil {
			t.Fatalf("add fault %+v: %v", f, err)
		}
		ids = append(ids, st.ID)
	}

	// The work, in two rounds around the first injection of every fault:
	// alarms, desired state, jobs.
	const alarms = 10
	raise := func(n int) {
		for range n {
			d.motion.Trigger(true)
			d.motion.Trigger(false)
		}
	}
	go raise(alarms / 2)
	for i, desired := range []string{`{"outputs":{"led":true}}`, `{"sensors":{"bme280":{"limits":{"temperature_c":{"high":28}}}}}`, `{"outputs":{"led":false},"sensors":{"bme280":{"limits":{"temperature_c":{"high":31}}}}}`} {
		if i == 2 {
			waitUntil(t, "every fault to be injected once", func() (bool, string) {
				r := sim.Broker().Faults()
				for _, f := range r.Faults {
					if f.Injected == 0 {
						return false, fmt.Sprintf("%+v", r.Faults)
					}
				}
				return true, ""
			})
			if env.during != nil {
				env.during(t, d, func() { raise(alarms - alarms/2) })
			} else {
				go raise(alarms - alarms/2)
			}
		}
		updateDesired(t, sim, thing, desired)
		if i == 0 {
			// and a job while the first delta is on its way
			doc := fmt.Sprintf(`{"operation":"download-file","url":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/files/recipes/%s.txt}","path":%q,"sha256":"%x"}`,
				thing, filepath.Join(dlDir, "recipe.txt"), sha256.Sum256(body))
			target := []string{sim.Jobs().ThingARN(thing)}
			if _, err := sim.Jobs().CreateJob(cloudjobs.CreateJobInput{JobID: "dl", Targets: target, Document: doc,
				PresignedURLConfig: &cloudjobs.PresignedURLConfig{ExpiresInSec: 3600}}); err != nil {
				t.Fatal(err)
			}
			if _, err := sim.Jobs().CreateJob(cloudjobs.CreateJobInput{JobID: "odd", Targets: target, Document: `{"operation":"format-disk"}`}); err != nil {
				t.Fatal(err)
			}
		}
	}

	seen := map[float64]int{}
	deadline := time.After(faultLimit)
	for len(seen) < alarms {
		select {
		case m := <-obs.alarms:
			ts, _ := m["timestamp"].(float64)
			seen[ts]++
		case <-deadline:
			t.Fatalf("after %s: %d of %d alarms delivered (status %+v)", faultLimit, len(seen), alarms, d.agent.Status())
		}
	}
	waitUntil(t, "the shadow to converge", func() (bool, string) {
		doc, err := sim.Shadows().Get(thing, "", nil)
		if err != nil {
			return false, err.Error()
		}
		var s struct {
			State struct {
				Reported map[string]any `json:"reported"`
				Delta    map[string]any `json:"delta"`
			} `json:"state"`
		}
		if err := json.Unmarshal(doc, &s); err != nil {
			return false, err.Error()
		}
		ok := s.State.Delta == nil && path(s.State.Reported, "outputs.led") == false && path(s.State.Reported, "sensors.bme280.limits.temperature_c.high") == 31.0
		return ok, string(doc)
	})
	for id, want := range map[string]string{"dl": cloudjobs.StatusSucceeded, "odd": cloudjobs.StatusRejected} {
		waitUntil(t, "job "+id+" to end "+want, func() (bool, string) {
			e, err := sim.Jobs().DescribeJobExecution(thing, id, 0)
			if err != nil {
				return false, err.Error()
			}
			return e.Status == want, fmt.Sprintf("%s %v", e.Status, e.StatusDetails)
		})
	}
	// Late duplicates of the alarms count too.
	for drained := false; !drained; {
		select {
		case m := <-obs.alarms:
			ts, _ := m["timestamp"].(float64)
			seen[ts]++
		default:
			drained = true
		}
	}
	run := faultRun{raised: alarms, delivered: len(seen), injected: map[string]int64{}}
	for _, n := range seen {
		run.duplicates += n - 1
	}
	for _, f := range sim.Broker().Faults().Faults {
		run.injected[f.ID] = f.Injected
	}
	for i, id := range ids {
		if run.injected[id] == 0 {
			t.Errorf("fault %s (%s %s) was never injected: the run did not exercise it", id, faults[i].Kind, faults[i].Packet)
		}
	}
	t.Logf("alarms raised %d, delivered %d, lost %d, duplicates %d; injected %v", run.raised, run.delivered, run.raised-run.delivered, run.duplicates, run.injected)
	return run
}

// waitUntil polls cond (a real condition of the simulator's state) until it
// holds, for at most faultLimit.
func waitUntil(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(faultLimit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentUnderFaults runs the agent under each protocol fault class
// iotsim injects: no alarm is lost, the shadow converges, every job ends.
func TestAgentUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault classes take a few seconds each; skipped with -short")
	}
	// The classes make chaos runs too; a timed class (lossy-acks,
	// flapping) lasts 6 s here.
	for _, tc := range broker.FaultClasses {
		if len(tc.Faults) == 0 {
			continue // the baseline: every other test runs without faults
		}
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			run := runUnderFaults(t, "box-"+tc.Name, tc.Aimed("", 6*time.Second), agent.Options{}, faultEnv{})
			if run.delivered != run.raised {
				t.Errorf("%d of %d alarms delivered", run.delivered, run.raised)
			}
		})
	}
}
