package agent

import (
	"errors"
	"time"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/firstboot"
	"github.com/iotagent/iotagent/agent/jobs"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/agent/provision"
	"github.com/iotagent/iotagent/ota"
)

// OfflineState is what the state dir says about the agent while it is not
// running: the sections of the local API that files alone can fill, for
// iotagent status, jobs list and ota status.
type OfflineState struct {
	StateDir string            `json:"state_dir"`
	Identity localapi.Identity `json:"identity"`
	Jobs     localapi.Jobs     `json:"jobs"`
	OTA      localapi.OTA      `json:"ota"`
	// FirstBoot is the recorded failure to adopt a config from the boot
	// partition, if any.
	FirstBoot *firstboot.Problem `json:"first_boot_error,omitempty"`
}

// ReadOffline reads cfg's state dir as the agent would find it at its
// next start. It only reads files, except that a damaged identity,
// rotation or first-boot record is recovered as the agent would recover
// it (moved aside and recorded: docs/state-files.md).
func ReadOffline(cfg config.Config, now time.Time) OfflineState {
	out := OfflineState{StateDir: cfg.StateDir}
	a := &Agent{cfg: cfg, now: func() time.Time { return now }}
	idErr := ""
	if cfg.Provisioning.Enabled() {
		id, err := provision.Load(cfg.StateDir)
		switch {
		case err == nil:
			adopt(&a.cfg, id)
		case errors.Is(err, provision.ErrNotProvisioned):
			idErr = "not provisioned yet: the agent provisions itself with the claim certificate at its next start"
		default:
			idErr = err.Error()
		}
	}
	if err := adoptRotated(&a.cfg); err != nil && idErr == "" {
		idErr = err.Error()
	}
	out.Identity = a.identitySection()
	if idErr != "" && out.Identity.Error != "" {
		out.Identity.Error = idErr // says more than "no such file"
	}

	out.Jobs = localapi.Jobs{Enabled: cfg.Jobs.Enabled}
	inf, err := readInFlight(cfg.StateDir)
	out.Jobs.InFlight = inf
	if err != nil {
		out.Jobs.Error = err.Error()
	}
	last, err := jobs.ReadLast(cfg.StateDir)
	if err != nil && out.Jobs.Error == "" {
		out.Jobs.Error = err.Error()
	}
	out.Jobs.Last = lastRun(last)

	out.OTA = localapi.OTA{Enabled: cfg.OTA.Enabled}
	var st ota.Status
	u, err := ota.New(ota.Options{StateDir: cfg.StateDir})
	if err == nil {
		st, err = u.Status()
	}
	switch {
	case errors.Is(err, ota.ErrNotInitialized):
	case err != nil:
		out.OTA.Error = err.Error()
	default:
		fillOTA(&out.OTA, st)
		out.OTA.InTrial = st.State == ota.Confirm
		out.OTA.Version = st.ActiveVersion
		if out.OTA.InTrial {
			out.OTA.Version = st.Release.Version
		}
	}
	if p, ok := firstboot.LastProblem(cfg.StateDir); ok {
		out.FirstBoot = &p
	}
	return out
}

// lastRun is the runner's record of its last finished job as the local
// API shows a job.
func lastRun(l *jobs.LastJob) *localapi.JobRun {
	if l == nil {
		return nil
	}
	return &localapi.JobRun{ID: l.JobID, Operation: l.Operation, EndedAt: l.EndedAt, Outcome: l.Status,
		Details: l.Details, Error: l.Details["reason"]}
}

// fillOTA copies the updater's persisted state into the OTA section.
func fillOTA(out *localapi.OTA, st ota.Status) {
	out.State, out.JobID, out.ReleaseVersion = string(st.State), st.JobID, st.Release.Version
	out.Active, out.ActiveVersion, out.Slot, out.FromVersion = st.Active, st.ActiveVersion, st.Slot, st.FromVersion
	out.Starts, out.MaxStarts, out.Reason, out.TrialFailure = st.Starts, st.MaxStarts, st.Reason, st.TrialFailure
	out.Failed, out.UpdatedAt = st.Failed, st.UpdatedAt
}
