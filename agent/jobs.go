package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/iotagent/iotagent/agent/jobs"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/ota"
)

// The jobs runner and the OTA updater in the agent.
//
// The runner starts once the shadow has first synced (the connection
// works and the subscriptions are back) and looks for work on every
// (re)connect. A restart-agent job, or an ota job after it has switched
// slots, asks the agent to restart: Run stops every part and returns nil,
// so the process exits 0 and systemd (Restart=always) starts it again,
// through ota PreStart; the runner then resumes the job from its
// in-flight record and finishes it.
//
// With ota enabled, a start of a version on trial commits it as soon as
// the shadow has synced; if that does not happen within
// ota.trial_timeout_s the trial is recorded as failed and Run returns an
// error, so that the process exits non-zero and PreStart rolls back.

// errRestart ends Run's errgroup when a job asked for a restart; Run
// returns nil for it.
var errRestart = errors.New("restart requested by a job")

// jobsState is the agent's jobs runner and OTA updater; both nil when off.
type jobsState struct {
	runner   *jobs.Runner
	updater  *ota.Updater
	handlers []string
	restart  chan struct{} // a job asks the agent to restart

	mu            sync.Mutex
	current, last *localapi.JobRun
}

// newJobs builds the OTA updater and the jobs runner that the config asks
// for. Call it once the transport exists.
func (a *Agent) newJobs() error {
	a.jobs.restart = make(chan struct{}, 1)
	if a.cfg.OTA.Enabled {
		u, err := ota.New(ota.Options{
			StateDir:     a.cfg.StateDir,
			Version:      a.opt.Version,
			TrustedKeys:  a.cfg.OTA.TrustedKeys,
			AllowedHosts: a.cfg.OTA.AllowedHosts,
			MaxStarts:    a.cfg.OTA.MaxStarts,
		})
		if err != nil {
			return err
		}
		a.jobs.updater = u
	}
	if !a.cfg.Jobs.Enabled {
		return nil
	}
	jc := a.cfg.Jobs
	restart := func(context.Context) error {
		signal(a.jobs.restart)
		return nil
	}
	handlers := map[string]jobs.Handler{
		"download-file": jobs.DownloadFile(jobs.DownloadOptions{Dirs: jc.DownloadDirs, AllowedHosts: jc.DownloadHosts, MaxBytes: jc.DownloadMaxBytes}),
		"restart-agent": jobs.RestartAgent(restart),
		"reboot":        jobs.Reboot(jobs.SystemdReboot, jobs.BootID),
	}
	if len(jc.RunCommand.Allowed) > 0 {
		handlers["run-command"] = jobs.RunCommand(jobs.CommandOptions{Allowed: jc.RunCommand.Allowed, User: jc.RunCommand.User})
	}
	if a.jobs.updater != nil {
		handlers["ota"] = jobs.OTA(jobs.OTAOptions{Updater: a.jobs.updater, Restart: restart, Healthy: a.waitSynced})
	}
	for op, h := range handlers {
		handlers[op] = a.recordJob(h)
	}
	r, err := jobs.New(jobs.Options{
		Thing:       a.cfg.ThingName,
		Transport:   subscribedFirst{a.tr},
		StateDir:    a.cfg.StateDir,
		Handlers:    handlers,
		StepTimeout: time.Duration(jc.StepTimeoutMin) * time.Minute,
		Logger:      a.log,
	})
	if err != nil {
		return err
	}
	// Subscribe the runner's topics now, with the shadow's, so that the
	// connection is whole (Healthy, READY) from the first sync on rather
	// than deaf for a moment when the runner starts; Runner.Run subscribes
	// them again with its own handlers, which replace these.
	for _, f := range JobsFilters {
		if err := a.tr.Subscribe("$aws/things/"+a.cfg.ThingName+"/jobs/"+f, 1, func(string, []byte) {}); err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
	}
	a.jobs.runner = r
	a.jobs.handlers = slices.Sorted(maps.Keys(handlers))
	return nil
}

// subscribedFirst holds a jobs request back until every subscription of
// the connection is acknowledged: the runner subscribes to the answer
// topics just before its first request, and an answer that arrives before
// the broker has the subscription is lost (the request would then wait
// for its timeout and the retry).
type subscribedFirst struct{ *transport.Client }

// subscribeWait bounds the wait; the request then goes out anyway.
const subscribeWait = 15 * time.Second

func (t subscribedFirst) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	wctx, cancel := context.WithTimeout(ctx, subscribeWait)
	_ = t.WaitSubscribed(wctx)
	cancel()
	return t.Client.Publish(ctx, topic, qos, payload)
}

// waitSynced returns once the shadow has first synced, or ctx's error.
func (a *Agent) waitSynced(ctx context.Context) error {
	select {
	case <-a.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kickJobs makes the runner look for work; OnConnect calls it.
func (a *Agent) kickJobs() {
	if a.jobs.runner != nil {
		a.jobs.runner.Kick()
	}
}

// runJobs watches an OTA trial and runs the jobs runner until ctx ends, or
// returns errRestart after a job asked for a restart.
func (a *Agent) runJobs(ctx context.Context) error {
	if u := a.jobs.updater; u != nil {
		deadline := time.NewTimer(time.Duration(a.cfg.OTA.TrialTimeoutS) * time.Second)
		err := u.WatchTrial(ctx, deadline.C, a.synced, a.trialProblem)
		deadline.Stop()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		}
	}
	if a.jobs.runner == nil {
		// Nothing runs jobs, but iotagent ota rollback still asks for a
		// restart.
		select {
		case <-ctx.Done():
			return nil
		case <-a.jobs.restart:
			a.log.Info("restart requested: stopping; the supervisor starts the agent again")
			return errRestart
		}
	}
	if a.waitSynced(ctx) != nil {
		return nil
	}
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.jobs.runner.Run(jctx) }()
	select {
	case err := <-done:
		return err
	case <-a.jobs.restart:
		a.log.Info("a job asked for a restart: stopping; the supervisor starts the agent again")
		cancel()
		<-done
		return errRestart
	}
}

// trialProblem names why a version on trial is not healthy.
func (a *Agent) trialProblem() string {
	if tr := a.transport(); tr != nil {
		if st := tr.Stats(); !st.Connected && st.LastError != "" {
			return "cannot connect: " + st.LastError
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.LastError
}

// recordJob wraps a handler to keep the current and last job for the
// local API.
func (a *Agent) recordJob(h jobs.Handler) jobs.Handler {
	return jobs.HandlerFunc(func(ctx context.Context, job jobs.Job, p *jobs.Progress) (map[string]string, error) {
		run := &localapi.JobRun{ID: job.ID, Operation: job.Operation, Resumed: job.Resumed, StartedAt: a.now()}
		a.jobs.mu.Lock()
		a.jobs.current = run
		a.jobs.mu.Unlock()
		details, err := h.Run(ctx, job, p)
		done := *run
		done.EndedAt, done.Details = a.now(), maps.Clone(details)
		cause := context.Cause(ctx)
		switch {
		case errors.Is(err, jobs.ErrKeepInProgress):
			done.Outcome = "RESTARTING"
		case errors.Is(cause, jobs.ErrCanceled):
			done.Outcome = "CANCELED"
		case ctx.Err() != nil && !errors.Is(cause, jobs.ErrStepTimeout):
			done.Outcome = "STOPPED"
		case errors.Is(err, jobs.ErrReject):
			done.Outcome = jobs.StatusRejected
		case err != nil || ctx.Err() != nil:
			done.Outcome = jobs.StatusFailed
		default:
			done.Outcome = jobs.StatusSucceeded
		}
		if err != nil && !errors.Is(err, jobs.ErrKeepInProgress) {
			done.Error = err.Error()
		}
		a.jobs.mu.Lock()
		a.jobs.current, a.jobs.last = nil, &done
		a.jobs.mu.Unlock()
		return details, err
	})
}

// jobsSection is the local API's "jobs" section.
func (a *Agent) jobsSection() localapi.Jobs {
	out := localapi.Jobs{Enabled: a.jobs.runner != nil, Handlers: a.jobs.handlers}
	a.jobs.mu.Lock()
	if a.jobs.current != nil {
		c := *a.jobs.current
		out.Current = &c
	}
	if a.jobs.last != nil {
		l := *a.jobs.last
		out.Last = &l
	}
	a.jobs.mu.Unlock()
	// The runner's record also has the jobs it finished without a
	// handler (REJECTED for an unknown operation or a bad document).
	if r := a.jobs.runner; r != nil {
		if l := lastRun(r.LastJob()); l != nil && (out.Last == nil || l.ID != out.Last.ID && l.EndedAt.After(out.Last.EndedAt)) {
			out.Last = l
		}
	}
	inf, err := readInFlight(a.cfg.StateDir)
	if err != nil {
		out.Error = err.Error()
	}
	out.InFlight = inf
	return out
}

// readInFlight reads what the runner persists in STATE/jobs/inflight.json
// (nil when no job is in flight).
func readInFlight(stateDir string) (*localapi.JobInFlight, error) {
	path := filepath.Join(stateDir, "jobs", "inflight.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("in-flight job: %w", err)
	}
	var f struct {
		localapi.JobInFlight
		Final *struct {
			Status string `json:"status"`
		} `json:"final"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		// The runner moves it aside at the next start (docs/state-files.md).
		return nil, fmt.Errorf("in-flight job %s: %w", path, err)
	}
	if f.Final != nil {
		f.FinalStatus = f.Final.Status
	}
	return &f.JobInFlight, nil
}

// otaSection is the local API's "ota" section.
func (a *Agent) otaSection() localapi.OTA {
	out := localapi.OTA{Enabled: a.jobs.updater != nil, Version: a.opt.Version}
	u := a.jobs.updater
	if u == nil {
		return out
	}
	st, err := u.Status()
	switch {
	case errors.Is(err, ota.ErrNotInitialized):
		return out
	case err != nil:
		out.Error = err.Error()
		return out
	}
	out.InTrial = u.InTrial()
	fillOTA(&out, st)
	return out
}
