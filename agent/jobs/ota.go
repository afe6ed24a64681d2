package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/iotagent/iotagent/ota"
)

// OTAOptions configure the "ota" handler.
type OTAOptions struct {
	Updater *ota.Updater
	// Restart makes the agent exit so that its supervisor starts it
	// again (through ota PreStart), into the new version.
	Restart func(context.Context) error
	// Healthy returns once the agent has connected, subscribed and synced
	// its shadow (or ctx ends); the version on trial commits then.
	Healthy func(context.Context) error
}

// OTA returns the "ota" handler (document: ota.ParseDocument). It runs or
// resumes the update; after the switch it restarts the agent, leaving the
// job IN_PROGRESS; the new version commits once healthy and reports
// SUCCEEDED with its version and slot; after a rollback the old version
// reports FAILED with the reason.
func OTA(o OTAOptions) Handler {
	return HandlerFunc(func(ctx context.Context, job Job, p *Progress) (map[string]string, error) {
		u := o.Updater
		rel, err := u.ParseDocument(job.Document)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrReject, err)
		}
		details := map[string]string{"version": rel.Version}
		// Report download progress every 10%; each report restarts the
		// step timer.
		var lastTenth atomic.Int64
		lastTenth.Store(-1)
		u.OnProgress(func(done, total int64) {
			if total <= 0 {
				return
			}
			tenth := done * 10 / total
			if lastTenth.Swap(tenth) != tenth {
				_ = p.Update(ctx, map[string]string{"step": "download", "version": rel.Version, "progress": fmt.Sprintf("%d%%", tenth*10)})
			}
		})
		defer u.OnProgress(nil)
		err = u.Install(ctx, job.ID, rel)
		st, _ := u.Status()
		switch {
		case err == nil:
			details["slot"] = st.Active
			return details, nil
		case errors.Is(err, ota.ErrSameVersion):
			details["step"] = "already running this version"
			details["slot"] = st.Active
			return details, nil
		case errors.Is(err, ota.ErrRestart):
			if err := p.Mark("restarting"); err != nil {
				return nil, err
			}
			if err := p.Update(ctx, map[string]string{"step": "restarting", "version": rel.Version, "slot": st.Slot}); err != nil {
				return nil, err
			}
			if err := o.Restart(ctx); err != nil {
				return nil, fmt.Errorf("restart into %s: %w", rel.Version, err)
			}
			return nil, ErrKeepInProgress
		case errors.Is(err, ota.ErrTrial):
			if err := p.Update(ctx, map[string]string{"step": "trial", "version": rel.Version, "slot": st.Slot}); err != nil {
				return nil, err
			}
			if err := o.Healthy(ctx); err != nil {
				return nil, err // ctx ended; the trial watchdog decides
			}
			if err := u.Commit(); err != nil {
				return nil, fmt.Errorf("commit: %w", err)
			}
			st, _ = u.Status()
			details["slot"] = st.Active
			return details, nil
		case errors.Is(err, ota.ErrBadDocument):
			return nil, fmt.Errorf("%w: %v", ErrReject, err)
		case ctx.Err() != nil:
			if errors.Is(context.Cause(ctx), ErrCanceled) {
				_ = u.Abort(job.ID)
			}
			return nil, err
		}
		return details, err
	})
}
