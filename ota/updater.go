package ota

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"aead.dev/minisign"
	"github.com/minio/selfupdate"

	"github.com/iotagent/iotagent/internal/hostallow"
)

// DefaultMaxStarts is how many starts a trial version gets to commit.
const DefaultMaxStarts = 3

// Outcomes of Install that are not errors.
var (
	// ErrRestart: the new version is in its slot and switched to; restart
	// the agent now (through the supervisor, so PreStart runs).
	ErrRestart = errors.New("ota: restart into the new version")
	// ErrTrial: this process is the new version on trial; commit once
	// healthy (Commit), or fail the trial (FailTrial) and exit.
	ErrTrial = errors.New("ota: running the new version on trial")
)

// Refusals and failures that a job reports as FAILED with the error text.
var (
	ErrSameVersion = errors.New("ota: this version is already running")
	ErrDowngrade   = errors.New("ota: downgrade refused (the job does not allow it)")
	// ErrUnorderedVersion: the running version is not N.N.N (a dev build,
	// a commit hash), so no downgrade check can be made; only a job that
	// allows downgrades installs over it.
	ErrUnorderedVersion = errors.New("ota: the running version has no order")
	ErrFailedBefore     = errors.New("ota: this version failed before and is not installed again automatically")
	ErrBusy             = errors.New("ota: another update is on trial")
	ErrRolledBack       = errors.New("ota: rolled back")
	ErrFailed           = errors.New("ota: update failed")
	ErrNoTrial          = errors.New("ota: no update on trial")
	ErrNoRollback       = errors.New("ota: nothing to roll back to")
)

// Options configure an Updater. Zero values take the documented defaults.
type Options struct {
	StateDir     string   // the agent's state dir; OTA uses STATE/ota
	Version      string   // the running version (internal/version.Version)
	TrustedKeys  []string // minisign public keys ("RW…" or .pub file text)
	AllowedHosts []string // hosts artifacts may come from; empty: any
	HTTPClient   *http.Client
	MaxStarts    int           // default DefaultMaxStarts
	Retries      int           // download attempts without progress; default 5
	BackoffMin   time.Duration // default 1 s
	BackoffMax   time.Duration // default 1 min

	Now      func() time.Time                                 // default time.Now
	Sleep    func(ctx context.Context, d time.Duration) error // default a timer
	Progress func(done, total int64)                          // download progress; may be nil
	Attempt  func(err error)                                  // called before each retry; may be nil
}

// Updater drives the update state machine in one state dir. Its methods
// may be called from several goroutines (the jobs runner, the trial watch,
// the local API): every change of state.json is made under one mutex,
// which Install holds for the whole install.
type Updater struct {
	o    Options
	l    Layout
	keys []minisign.PublicKey
	mu   sync.Mutex
}

// testHookState, when non-nil, runs right after each state is persisted;
// an error stops Install there as a crash would. Nil in production.
var testHookState func(State) error

// New checks o and returns an Updater. It reads nothing yet.
func New(o Options) (*Updater, error) {
	if o.StateDir == "" {
		return nil, errors.New("ota: no state dir")
	}
	u := &Updater{o: o, l: NewLayout(o.StateDir)}
	for i, k := range o.TrustedKeys {
		pk, err := ParsePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("ota: trusted key %d: %w", i, err)
		}
		u.keys = append(u.keys, pk)
	}
	if u.o.HTTPClient == nil {
		u.o.HTTPClient = &http.Client{Timeout: 30 * time.Minute}
	}
	// Redirects are checked against the allowed hosts too.
	u.o.HTTPClient = hostallow.Client(u.o.HTTPClient, u.o.AllowedHosts)
	if u.o.MaxStarts <= 0 {
		u.o.MaxStarts = DefaultMaxStarts
	}
	if u.o.Retries <= 0 {
		u.o.Retries = 5
	}
	if u.o.BackoffMin <= 0 {
		u.o.BackoffMin = time.Second
	}
	if u.o.BackoffMax < u.o.BackoffMin {
		u.o.BackoffMax = max(time.Minute, u.o.BackoffMin)
	}
	if u.o.Now == nil {
		u.o.Now = time.Now
	}
	if u.o.Sleep == nil {
		u.o.Sleep = sleepCtx
	}
	if u.o.Progress == nil {
		u.o.Progress = func(int64, int64) {}
	}
	if u.o.Attempt == nil {
		u.o.Attempt = func(error) {}
	}
	return u, nil
}

// Layout returns the file layout.
func (u *Updater) Layout() Layout { return u.l }

// load reads state.json; one that cannot be read is recovered as PreStart
// does (moved aside, recorded, started again from the committed slot), so
// that the updater goes on working when the agent runs without PreStart.
func (u *Updater) load() (Status, error) {
	st, err := u.l.load()
	if err == nil || errors.Is(err, ErrNotInitialized) {
		return st, err
	}
	return u.l.recoverState(err, u.o.Now())
}

// Status returns the persisted state. It only reads: an unreadable
// state.json is an error here, and recovered by the next call that acts
// (InTrial, which the agent calls at start, Install, Commit, ...).
func (u *Updater) Status() (Status, error) { return u.l.load() }

// ParseDocument parses a job document with the updater's allowed hosts.
func (u *Updater) ParseDocument(raw []byte) (Release, error) {
	return ParseDocument(raw, u.o.AllowedHosts)
}

func (u *Updater) persist(st *Status, s State) error {
	st.State = s
	if err := u.l.save(st, u.o.Now()); err != nil {
		return err
	}
	if testHookState != nil {
		return testHookState(s)
	}
	return nil
}

// Install runs (or resumes) the update that job jobID asks for, as far as
// this process can take it. It returns:
//   - ErrRestart when the new version is switched to: restart the agent;
//   - ErrTrial when this process is that new version on trial;
//   - nil when the update is committed and this is the new version;
//   - ErrSameVersion when r.Version is already running (nothing to do);
//   - an error wrapping ErrRolledBack, ErrFailed, ErrFailedBefore,
//     ErrDowngrade, ErrUnorderedVersion, ErrWrongArch, ErrBusy,
//     ErrSignedMismatch, ErrUnsignedMeta or a verification error when the
//     job failed: report it FAILED with the error text;
//   - ctx's error when interrupted: the state is kept for the next call.
func (u *Updater) Install(ctx context.Context, jobID string, r Release) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	st, err := u.load()
	if err != nil {
		return err
	}
	if st.JobID == jobID {
		switch st.State {
		case Committed:
			if st.ActiveVersion == u.o.Version {
				return nil
			}
			return fmt.Errorf("%w: version %s was committed but %s is running", ErrFailed, st.ActiveVersion, u.o.Version)
		case RolledBack:
			return fmt.Errorf("%w: %s", ErrRolledBack, st.Reason)
		case Confirm:
			if u.o.Version == st.Release.Version && linkSlot(u.l.Current()) == st.Slot {
				return ErrTrial
			}
			return ErrRestart // the supervisor's PreStart finishes the switch
		case Idle:
			if st.Reason != "" {
				return fmt.Errorf("%w: %s", ErrFailed, st.Reason)
			}
		default:
			return u.run(ctx, &st, r)
		}
	}
	if st.State == Confirm {
		return fmt.Errorf("%w: job %s, version %s", ErrBusy, st.JobID, st.Release.Version)
	}
	if err := u.admit(&st, r); err != nil {
		return err
	}
	// A new update; an unfinished one of another job is abandoned.
	if err := os.Remove(u.l.downloadPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ota: %w", err)
	}
	st.JobID, st.Release, st.Slot, st.FromVersion = jobID, r, other(st.Active), u.o.Version
	st.Starts, st.MaxStarts, st.ETag, st.Reason, st.TrialFailure = 0, u.o.MaxStarts, "", "", ""
	if err := u.persist(&st, Download); err != nil {
		return err
	}
	return u.run(ctx, &st, r)
}

// admit refuses releases that must not be installed. Its rules read the
// version and arch the signature vouches for (Meta), which must be the
// document's: nothing else in the document is signed.
func (u *Updater) admit(st *Status, r Release) error {
	m, err := signedMeta(r, u.keys)
	if err != nil {
		return err
	}
	if err := checkSigned(r, m); err != nil {
		return err
	}
	if goarch(m.Arch) != DeviceArch {
		return fmt.Errorf("%w: the release is for %s, this device is %s", ErrWrongArch, m.Arch, DeviceArch)
	}
	if m.Version == u.o.Version {
		return ErrSameVersion
	}
	if st.failedBefore(m.Version) {
		return fmt.Errorf("%w: %s", ErrFailedBefore, m.Version)
	}
	c, ordered := compareVersions(m.Version, u.o.Version)
	switch {
	case r.AllowDowngrade:
	case !ordered:
		return fmt.Errorf("%w: this device runs %q, which is not a release version (N.N.N), so whether %s is older cannot be told; "+
			"a job for it must allow downgrades (iotagent ota release --allow-downgrade)", ErrUnorderedVersion, u.o.Version, m.Version)
	case c < 0:
		return fmt.Errorf("%w: %s is older than %s", ErrDowngrade, m.Version, u.o.Version)
	}
	return nil
}

// run takes the update from st.State to Confirm.
func (u *Updater) run(ctx context.Context, st *Status, r Release) error {
	// The URL may be fresh (presigned URLs expire); the rest must match.
	if r.SHA256 != st.Release.SHA256 || r.Size != st.Release.Size || r.Version != st.Release.Version ||
		r.Signature != st.Release.Signature || r.Arch != st.Release.Arch {
		return u.fail(st, fmt.Errorf("%w: the job's document changed during the update", ErrFailed))
	}
	st.Release.URL = r.URL
	for {
		switch st.State {
		case Download:
			if err := u.download(ctx, st, r); err != nil {
				return u.fail(st, err)
			}
			if err := u.persist(st, Verify); err != nil {
				return err
			}
		case Verify:
			if err := verifyFile(u.l.downloadPath(), st.Release, u.keys); err != nil {
				return u.fail(st, err)
			}
			if err := u.persist(st, Stage); err != nil {
				return err
			}
		case Stage:
			if err := u.stage(st); err != nil {
				return u.fail(st, err)
			}
			if err := u.persist(st, Apply); err != nil {
				return err
			}
		case Apply:
			st.Starts = 0
			if err := u.persist(st, Confirm); err != nil {
				return err
			}
		case Confirm:
			if err := u.l.repairWith(st); err != nil {
				return err
			}
			_ = os.Remove(u.l.downloadPath())
			return ErrRestart
		default:
			return fmt.Errorf("ota: unexpected state %q", st.State)
		}
	}
}

// fail ends the update before anything was switched: Idle with a reason,
// unless the error is ctx's or the state could not be written (then the
// next call resumes).
func (u *Updater) fail(st *Status, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	st.Reason = err.Error()
	st.Slot = ""
	_ = os.Remove(u.l.downloadPath())
	if serr := u.persist(st, Idle); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// stage writes the verified download into the inactive slot with
// selfupdate (explicit TargetPath: it follows symlinks otherwise) and
// fsyncs it.
func (u *Updater) stage(st *Status) error {
	if st.Slot == st.Active || !validSlot(st.Slot) {
		return fmt.Errorf("ota: stage: slot %q is the active one", st.Slot)
	}
	dir := u.l.slotDir(st.Slot)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	target := u.l.SlotBinary(st.Slot)
	// selfupdate renames the old target away first and fails if there is
	// none: give an empty slot a placeholder.
	if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(target, nil, 0o755); err != nil {
			return fmt.Errorf("stage: %w", err)
		}
	}
	sum, _ := hex.DecodeString(st.Release.SHA256)
	f, err := os.Open(u.l.downloadPath())
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	defer f.Close()
	if err := selfupdate.Apply(f, selfupdate.Options{TargetPath: target, TargetMode: 0o755, Checksum: sum}); err != nil {
		if rerr := selfupdate.RollbackError(err); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("stage: write slot %s: %w", st.Slot, err)
	}
	// selfupdate does not fsync: do it for the file and the directory.
	bf, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	err = bf.Sync()
	bf.Close()
	if err != nil {
		return fmt.Errorf("stage: sync: %w", err)
	}
	return syncDir(dir)
}

// Commit makes the version on trial the committed one. Only that version
// may commit; committing again is a no-op.
func (u *Updater) Commit() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	st, err := u.load()
	if err != nil {
		return err
	}
	if st.State == Committed && st.ActiveVersion == u.o.Version {
		return nil
	}
	if st.State != Confirm {
		return fmt.Errorf("%w (state %s)", ErrNoTrial, st.State)
	}
	if st.Release.Version != u.o.Version {
		return fmt.Errorf("%w: version %s is on trial, this is %s", ErrNoTrial, st.Release.Version, u.o.Version)
	}
	st.Active, st.ActiveVersion, st.Slot, st.Starts, st.TrialFailure = st.Slot, st.Release.Version, "", 0, ""
	if err := u.persist(&st, Committed); err != nil {
		return err
	}
	return u.l.repairWith(&st)
}

// FailTrial records why the version on trial gave up (it could not
// connect, or was not healthy in time). The caller then exits; PreStart
// rolls back on the next start.
func (u *Updater) FailTrial(reason string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	st, err := u.load()
	if err != nil {
		return err
	}
	if st.State != Confirm {
		return fmt.Errorf("%w (state %s)", ErrNoTrial, st.State)
	}
	st.TrialFailure = reason
	return u.l.save(&st, u.o.Now())
}

// InTrial reports whether this process is the version on trial.
func (u *Updater) InTrial() bool {
	st, err := u.load()
	return err == nil && st.State == Confirm && st.Release.Version == u.o.Version && linkSlot(u.l.Current()) == st.Slot
}

// Rollback abandons the trial, or returns to the previous slot after a
// commit. The agent must restart afterwards. While an install is under
// way it returns ErrBusy at once.
func (u *Updater) Rollback(reason string) error {
	if !u.mu.TryLock() {
		return fmt.Errorf("%w: an update is being installed", ErrBusy)
	}
	defer u.mu.Unlock()
	st, err := u.load()
	if err != nil {
		return err
	}
	switch st.State {
	case Confirm:
		return rollback(u.l, &st, reason, u.o.Now())
	case Committed:
		prev := other(st.Active)
		if CheckBinary(u.l.SlotBinary(prev)) != nil || st.FromVersion == "" {
			return fmt.Errorf("%w: slot %s holds no usable binary", ErrNoRollback, prev)
		}
		st.Failed = appendOnce(st.Failed, st.ActiveVersion)
		st.Active, st.ActiveVersion, st.Reason = prev, st.FromVersion, reason
		st.State = RolledBack
		if err := u.l.save(&st, u.o.Now()); err != nil {
			return err
		}
		return u.l.repairWith(&st)
	}
	return fmt.Errorf("%w (state %s)", ErrNoRollback, st.State)
}

// Abort abandons an update of job jobID that has not been switched to yet
// (the job was canceled). It does nothing in other states.
func (u *Updater) Abort(jobID string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	st, err := u.load()
	if err != nil {
		return err
	}
	if st.JobID != jobID {
		return nil
	}
	switch st.State {
	case Download, Verify, Stage, Apply:
		return u.fail(&st, errors.New("canceled"))
	}
	return nil
}

func appendOnce(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// rollback ends a trial: state first, then the symlinks.
func rollback(l Layout, st *Status, reason string, now time.Time) error {
	st.Failed = appendOnce(st.Failed, st.Release.Version)
	st.Reason, st.Slot = reason, ""
	st.State = RolledBack
	if err := l.save(st, now); err != nil {
		return err
	}
	if testHookState != nil {
		if err := testHookState(RolledBack); err != nil {
			return err
		}
	}
	return l.repairWith(st)
}

// ErrTrialFailed is returned by WatchTrial when the version on trial was
// not healthy in time; the agent should exit (non-zero) so that PreStart
// rolls back.
var ErrTrialFailed = errors.New("ota: trial failed")

// WatchTrial, in the version on trial, commits as soon as healthy is
// closed (connected, subscribed, shadow synced), or, when deadline fires
// first, records why (why() names the last problem, e.g. "cannot
// connect: …") and returns ErrTrialFailed. It returns nil at once when
// this process is not on trial, and ctx's error when ctx ends first.
func (u *Updater) WatchTrial(ctx context.Context, deadline <-chan time.Time, healthy <-chan struct{}, why func() string) error {
	if !u.InTrial() {
		return nil
	}
	select {
	case <-healthy:
		err := u.Commit()
		if errors.Is(err, ErrNoTrial) && !u.InTrial() {
			return nil // committed or rolled back meanwhile (iotagent ota commit|rollback)
		}
		return err
	case <-deadline:
		reason := "not healthy before the trial deadline"
		if why != nil {
			if w := why(); w != "" {
				reason += ": " + w
			}
		}
		if err := u.FailTrial(reason); err != nil {
			if errors.Is(err, ErrNoTrial) && !u.InTrial() {
				return nil
			}
			return errors.Join(ErrTrialFailed, err)
		}
		return fmt.Errorf("%w: %s", ErrTrialFailed, reason)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// OnProgress sets the download progress callback (nil: none).
func (u *Updater) OnProgress(f func(done, total int64)) {
	if f == nil {
		f = func(int64, int64) {}
	}
	u.o.Progress = f
}
