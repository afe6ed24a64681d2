package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	cloudjobs "github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/ota"
	"github.com/iotagent/iotagent/ota/otatest"
)

// jobExecution is the outcome as `aws iot describe-job-execution` shows it.
type jobExecution struct {
	Execution struct {
		Status        string `json:"status"`
		StatusDetails struct {
			DetailsMap map[string]string `json:"detailsMap"`
		} `json:"statusDetails"`
	} `json:"execution"`
}

func (w *world) describeExecution(t *testing.T, thing, jobID string) jobExecution {
	t.Helper()
	var out jobExecution
	w.aws.run(t, &out, "--endpoint-url", w.sim.Endpoint().HTTPEndpoint, "iot", "describe-job-execution",
		"--job-id", jobID, "--thing-name", thing)
	return out
}

// TestUpdate: v1 runs under the supervisor; an ota job created with `aws
// iot create-job` (the artifact uploaded with `aws s3 cp`, a presigned
// placeholder in the document) makes it download, verify and stage v2,
// switch and restart; v2 commits; the job is SUCCEEDED and the shadow
// reports v2.
func TestUpdate(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, true)
	d := w.newDevice(t, "ota-ok", deviceOptions{})
	data := readFile(t, agentBinary(t, v2, ""))
	rel := releaseOf(t, w.key, v2, "iotagent-2.0.0", data)
	w.upload(t, rel.Key, data)

	created := w.createJob(t, "ota-ok-1", d.thing, rel.document())
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	e, err := w.waitJob(ctx, d.thing, "ota-ok-1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != cloudjobs.StatusSucceeded || e.StatusDetails["version"] != v2 || e.StatusDetails["slot"] != "b" {
		t.Errorf("job: %s %v, want SUCCEEDED with version %s in slot b", e.Status, e.StatusDetails, v2)
	}
	ex := w.describeExecution(t, d.thing, "ota-ok-1")
	if ex.Execution.Status != "SUCCEEDED" || ex.Execution.StatusDetails.DetailsMap["version"] != v2 {
		t.Errorf("aws iot describe-job-execution: %+v", ex.Execution)
	}
	if got, err := d.runningVersion(ctx); err != nil || got != v2 {
		t.Errorf("running version %q, %v; want %s", got, err, v2)
	}
	if err := w.waitReported(ctx, d.thing, v2); err != nil {
		t.Error(err)
	}
	var shadow struct {
		State struct {
			Reported struct {
				Agent map[string]any `json:"agent"`
			} `json:"reported"`
		} `json:"state"`
	}
	out := t.TempDir() + "/shadow.json"
	w.aws.run(t, nil, "--endpoint-url", w.sim.Endpoint().HTTPEndpoint, "iot-data", "get-thing-shadow", "--thing-name", d.thing, out)
	if err := jsonFile(out, &shadow); err != nil || shadow.State.Reported.Agent["version"] != v2 {
		t.Errorf("aws iot-data get-thing-shadow: agent %v, %v; want version %s", shadow.State.Reported.Agent, err, v2)
	}
	if st := d.otaState(t); st.State != "committed" || st.Active != "b" || st.ActiveVersion != v2 {
		t.Errorf("ota state %s, active %s (%s); want committed, b (%s)", st.State, st.Active, st.ActiveVersion, v2)
	}

	// The starts: v1 from slot a, then v2 on trial from slot b, once.
	var starts []string
	for _, e := range d.events(otatest.Started) {
		starts = append(starts, e.Slot+" "+e.Version)
	}
	if strings.Join(starts, ", ") != "a "+v1+", b "+v2 {
		t.Errorf("starts: %v, want [a %s, b %s]", starts, v1, v2)
	}
	reqs := w.objects.requests(rel.Key)
	if len(reqs) != 1 || reqs[0].Status != 200 || reqs[0].Sent != rel.Size {
		t.Errorf("artifact downloads: %+v, want one whole GET", reqs)
	}

	d.sup.Stop()
	exits := d.events(otatest.Exited)
	if len(exits) != 2 || exits[0].PeakRSSKB == 0 {
		t.Fatalf("exits %v: want v1's (with its peak RSS) and v2's", exits)
	}
	since := func(k otatest.Kind, slot string) string {
		for _, e := range d.sup.Events() {
			if e.Kind == k && e.Slot == slot && !e.At.Before(created) {
				return e.At.Sub(created).Round(time.Millisecond).String()
			}
		}
		return "-"
	}
	t.Logf("artifact %.1f MB: job created -> SUCCEEDED in %s (iotsim's createdAt -> lastUpdatedAt); from creation: v1 STOPPING=1 %s, v1 exit %s, v2 start %s, v2 READY=1 %s",
		float64(rel.Size)/1e6, e.LastUpdatedAt.Sub(created).Round(time.Millisecond),
		since(otatest.Stopping, "a"), since(otatest.Exited, "a"), since(otatest.Started, "b"), since(otatest.Ready, "b"))
	t.Logf("peak RSS (VmHWM at STOPPING=1): v1, which downloaded, verified and staged v2: %d KB; v2 after it committed: %d KB",
		exits[0].PeakRSSKB, exits[1].PeakRSSKB)
}

// TestUpdateFails: each failure ends with v1 running and the job FAILED
// with a reason.
func TestUpdateFails(t *testing.T) {
	skipShort(t)
	t.Parallel()
	good := func(s *setup) { // the real v2, rightly signed
		s.data = readFile(s.t, agentBinary(s.t, v2, ""))
		s.rel = releaseOf(s.t, s.w.key, v2, "iotagent-2.0.0", s.data)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, tc := range []failCase{
		{name: "v2 exits at start", switched: true,
			prep: func(s *setup) {
				s.data = readFile(s.t, fakeBinary(s.t, "exit", v2))
				s.rel = releaseOf(s.t, s.w.key, v2, "iotagent-2.0.0", s.data)
			},
			reason: []string{"rolled back", "did not commit in 3 starts"}},
		{name: "v2 hangs", switched: true,
			prep: func(s *setup) {
				s.data = readFile(s.t, fakeBinary(s.t, "hang", v2))
				s.rel = releaseOf(s.t, s.w.key, v2, "iotagent-2.0.0", s.data)
			},
			reason: []string{"rolled back", "did not commit in 3 starts"}},
		{name: "v2 cannot connect", switched: true,
			prep: func(s *setup) {
				good(s)
				// The network goes away once the slot is switched (PreStart
				// put v2 on trial) and comes back after the rollback.
				p := newProxy(s.t, s.w.sim.MQTTAddrs()[0])
				s.opts.mqttAddr = p.addr()
				s.opts.onEvent = func(e otatest.Event) {
					if e.Kind != otatest.PreStart {
						return
					}
					switch {
					case strings.Contains(e.Text, "on trial"):
						p.setUp(false)
					case strings.Contains(e.Text, "rolled back"):
						p.setUp(true)
					}
				}
			},
			reason: []string{"rolled back", "failed its trial", "cannot connect"}},
		{name: "arm64 build, document says amd64",
			prep: func(s *setup) {
				s.data = readFile(s.t, agentBinary(s.t, v2, "arm64"))
				s.rel = releaseOf(s.t, s.w.key, v2, "iotagent-2.0.0-arm64", s.data)
			},
			reason: []string{"built for another CPU", "EM_AARCH64"}},
		{name: "document says arm64, the signature this CPU",
			prep: func(s *setup) {
				s.data = readFile(s.t, agentBinary(s.t, v2, "arm64"))
				s.rel = releaseOf(s.t, s.w.key, v2, "iotagent-2.0.0-arm64", s.data)
				s.rel.Arch = "arm64"
			},
			reason: []string{"disagrees with its signature", "the job says arch arm64"}},
		{name: "signed and documented for arm64",
			prep: func(s *setup) {
				s.data = readFile(s.t, agentBinary(s.t, v2, "arm64"))
				s.rel = releaseOf(s.t, s.w.key, v2, "iotagent-2.0.0-arm64", s.data)
				s.rel.Arch = "arm64"
				s.rel.Signature = s.w.key.signAs(s.t, s.data, ota.Meta{Version: v2, Arch: "arm64"})
			},
			reason: []string{"built for another CPU", "the release is for arm64"}},
		{name: "document says an older version than the signature",
			prep: func(s *setup) {
				good(s)
				s.rel.Version = "0.0.1"
			},
			reason: []string{"disagrees with its signature", "the job says version 0.0.1, the signature " + v2}},
		{name: "corrupted download",
			prep: func(s *setup) {
				good(s)
				s.data = append([]byte(nil), s.data...)
				s.data[len(s.data)/2] ^= 0xff
			},
			reason: []string{"sha256 mismatch"}},
		{name: "signed by an untrusted key",
			prep: func(s *setup) {
				good(s)
				s.rel.Signature = newKey(s.t).sign(s.t, s.data, s.rel.Version)
			},
			reason: []string{"signed by a key that is not trusted"}},
		{name: "signature of other bytes",
			prep: func(s *setup) {
				good(s)
				s.rel.Signature = s.w.key.sign(s.t, readFile(s.t, agentBinary(s.t, v1, "")), s.rel.Version)
			},
			reason: []string{"bad signature", "verification failed"}},
		{name: "size mismatch: the document says less",
			prep: func(s *setup) {
				good(s)
				s.rel.Size--
			},
			reason: []string{"size mismatch"}},
		{name: "size mismatch: the document says more",
			prep: func(s *setup) {
				good(s)
				s.rel.Size++
			},
			reason: []string{"size mismatch", "the server has"}},
	} {
		// Every case at once, from goroutines: t.Parallel would let
		// -parallel (GOMAXPROCS, 2 here) run only two, and the cases
		// mostly wait (watchdogs, the trial deadline, restarts).
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(tc.name, func(t *testing.T) { updateFails(t, tc) })
		}()
	}
}

// setup is what a failure case prepares.
type setup struct {
	w    *world
	t    *testing.T
	data []byte  // the object uploaded
	rel  release // what the document says
	opts deviceOptions
}

type failCase struct {
	name string
	prep func(*setup)
	// switched: v2 was installed and started, then rolled back.
	switched bool
	reason   []string // in the FAILED reason
}

func updateFails(t *testing.T, tc failCase) {
	s := &setup{w: newWorld(t, true), t: t}
	tc.prep(s)
	d := s.w.newDevice(t, "ota-fail", s.opts)
	s.w.upload(t, s.rel.Key, s.data)
	created := s.w.createJob(t, "ota-fail-1", d.thing, s.rel.document())
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	e, err := s.w.waitJob(ctx, d.thing, "ota-fail-1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != cloudjobs.StatusFailed {
		t.Errorf("job %s %v, want FAILED", e.Status, e.StatusDetails)
	}
	for _, want := range tc.reason {
		if !strings.Contains(e.StatusDetails["reason"], want) {
			t.Errorf("reason %q lacks %q", e.StatusDetails["reason"], want)
		}
	}
	ex := s.w.describeExecution(t, d.thing, "ota-fail-1")
	if ex.Execution.Status != "FAILED" || ex.Execution.StatusDetails.DetailsMap["reason"] != e.StatusDetails["reason"] {
		t.Errorf("aws iot describe-job-execution: %+v", ex.Execution)
	}
	if got, err := d.runningVersion(ctx); err != nil || got != v1 {
		t.Errorf("running version %q, %v; want %s", got, err, v1)
	}
	if err := s.w.waitReported(ctx, d.thing, v1); err != nil {
		t.Error(err)
	}
	st := d.otaState(t)
	if st.Active != "a" || st.ActiveVersion != v1 {
		t.Errorf("ota state: active %s (%s), want a (%s)", st.Active, st.ActiveVersion, v1)
	}
	starts := d.events(otatest.Started)
	var trial []otatest.Event
	for _, e := range starts {
		if e.Slot == "b" {
			trial = append(trial, e)
		}
	}
	switch {
	case !tc.switched && len(starts) != 1:
		t.Errorf("%d starts, want 1: v1 must not stop when the update fails before the switch", len(starts))
	case tc.switched && (len(trial) == 0 || starts[len(starts)-1].Slot != "a"):
		t.Errorf("starts %v: want v2 tried in slot b, then v1 from slot a", starts)
	case tc.switched && st.State != "rolled_back":
		t.Errorf("ota state %s, want rolled_back", st.State)
	}
	if tc.name == "v2 hangs" {
		n := 0
		for _, e := range d.events(otatest.Watchdog) {
			if e.Slot == "b" {
				n++
			}
		}
		if n != 3 {
			t.Errorf("%d watchdog kills of v2, want 3 (one per trial start)", n)
		}
	}
	if tc.name == "v2 exits at start" && len(trial) > 0 {
		switchAt := trial[0].At
		ready, err := d.sup.Wait(ctx, trial[len(trial)-1].Seq, func(e otatest.Event) bool {
			return e.Kind == otatest.Ready && e.Slot == "a"
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("rollback of a v2 that exits at start (%d starts): switch -> v1 ready again %s, -> job FAILED %s; job created -> FAILED %s",
			len(trial), ready.At.Sub(switchAt).Round(time.Millisecond), e.LastUpdatedAt.Sub(switchAt).Round(time.Millisecond),
			e.LastUpdatedAt.Sub(created).Round(time.Millisecond))
	}
}

// TestDownloadResumes: the connection drops half-way through the
// artifact; the agent resumes with a Range request for the rest and the
// update succeeds.
func TestDownloadResumes(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, true)
	d := w.newDevice(t, "ota-resume", deviceOptions{})
	data := readFile(t, agentBinary(t, v2, ""))
	rel := releaseOf(t, w.key, v2, "iotagent-2.0.0", data)
	w.upload(t, rel.Key, data)
	half := rel.Size / 2
	w.objects.rule(rel.Key, &objectRule{cutAt: half})

	w.createJob(t, "ota-resume-1", d.thing, rel.document())
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	e, err := w.waitJob(ctx, d.thing, "ota-resume-1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != cloudjobs.StatusSucceeded {
		t.Errorf("job %s %v, want SUCCEEDED", e.Status, e.StatusDetails)
	}
	if got, err := d.runningVersion(ctx); err != nil || got != v2 {
		t.Errorf("running version %q, %v; want %s", got, err, v2)
	}
	reqs := w.objects.requests(rel.Key)
	if len(reqs) != 2 {
		t.Fatalf("artifact requests %+v, want 2", reqs)
	}
	first, second := reqs[0], reqs[1]
	if first.Range != "" || first.Status != 200 || first.Sent != half {
		t.Errorf("first request %+v: want a whole GET cut at %d bytes", first, half)
	}
	var from int64
	if n, err := fmt.Sscanf(second.Range, "bytes=%d-", &from); n != 1 || err != nil || from <= 0 || from > half ||
		second.Status != 206 || second.Sent != rel.Size-from {
		t.Errorf("second request %+v: want Range bytes=N- with 0 < N <= %d, 206 and the rest", second, half)
	}
	t.Logf("resumed at byte %d of %d (Range %q)", from, rel.Size, second.Range)
}

func jsonFile(p string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
