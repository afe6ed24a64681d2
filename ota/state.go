package ota

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/iotagent/iotagent/internal/atomicfile"
)

// State is a step of the update state machine.
type State string

// The states, in order. Committed and RolledBack are terminal; Idle means
// no update was ever started.
const (
	Idle       State = "idle"
	Download   State = "download"
	Verify     State = "verify"
	Stage      State = "stage"
	Apply      State = "apply"
	Confirm    State = "confirm"
	Committed  State = "committed"
	RolledBack State = "rolled_back"
)

// Terminal reports whether s ends an update.
func (s State) Terminal() bool { return s == Idle || s == Committed || s == RolledBack }

// Status is the persisted state of the updater (STATE/ota/state.json).
type Status struct {
	State State `json:"state"`
	// JobID is the job that asked for the update in progress or last done.
	JobID   string  `json:"job_id,omitempty"`
	Release Release `json:"release"`
	// Active is the committed slot ("a" or "b"): the known-good binary.
	Active string `json:"active"`
	// ActiveVersion is the version in the active slot, when known.
	ActiveVersion string `json:"active_version,omitempty"`
	// Slot is the slot being written or tried (the inactive one).
	Slot string `json:"slot,omitempty"`
	// FromVersion is the version that was running when the update began.
	FromVersion string `json:"from_version,omitempty"`
	// Starts counts the starts of the trial version (Confirm); PreStart
	// rolls back when it exceeds MaxStarts.
	Starts    int `json:"starts,omitempty"`
	MaxStarts int `json:"max_starts,omitempty"`
	// ETag is the artifact's ETag from the first response, sent back as
	// If-Range when resuming.
	ETag string `json:"etag,omitempty"`
	// Reason says why the update failed or was rolled back.
	Reason string `json:"reason,omitempty"`
	// TrialFailure is what the trial version recorded before exiting
	// (FailTrial); PreStart rolls back at once when it is set.
	TrialFailure string `json:"trial_failure,omitempty"`
	// Failed lists the versions that were rolled back; they are never
	// installed again automatically.
	Failed    []string  `json:"failed,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// failedBefore reports whether version is on the failed list.
func (s *Status) failedBefore(version string) bool {
	for _, v := range s.Failed {
		if v == version {
			return true
		}
	}
	return false
}

// Layout names the files under STATE/ota.
type Layout struct{ Dir string }

// NewLayout returns the layout under stateDir/ota.
func NewLayout(stateDir string) Layout { return Layout{Dir: filepath.Join(stateDir, "ota")} }

// Binary is the file name of the agent in a slot.
const Binary = "iotagent"

// Slots are the two slot names.
var Slots = [2]string{"a", "b"}

func (l Layout) statePath() string          { return filepath.Join(l.Dir, "state.json") }
func (l Layout) downloadPath() string       { return filepath.Join(l.Dir, "download.part") }
func (l Layout) slotDir(slot string) string { return filepath.Join(l.Dir, "slots", slot) }

// SlotBinary is the agent binary in slot.
func (l Layout) SlotBinary(slot string) string { return filepath.Join(l.slotDir(slot), Binary) }

// Current is the symlink the supervisor starts the agent through.
func (l Layout) Current() string { return filepath.Join(l.Dir, "current") }

// Committed is the symlink to the known-good slot; the supervisor runs
// PreStart from it.
func (l Layout) Committed() string { return filepath.Join(l.Dir, "committed") }

// other returns the slot that is not s.
func other(s string) string {
	if s == "a" {
		return "b"
	}
	return "a"
}

func validSlot(s string) bool { return s == "a" || s == "b" }

// ErrNotInitialized is returned when STATE/ota has no state yet (Init was
// not run).
var ErrNotInitialized = errors.New("ota: not initialized")

// load reads state.json.
func (l Layout) load() (Status, error) {
	b, err := os.ReadFile(l.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return Status{}, fmt.Errorf("read ota state: %w", ErrNotInitialized)
	}
	if err != nil {
		return Status{}, fmt.Errorf("read ota state: %w", err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("parse ota state %s: %w", l.statePath(), err)
	}
	if !validSlot(s.Active) {
		return Status{}, fmt.Errorf("parse ota state %s: bad active slot %q", l.statePath(), s.Active)
	}
	if s.Slot != "" && !validSlot(s.Slot) {
		return Status{}, fmt.Errorf("parse ota state %s: bad slot %q", l.statePath(), s.Slot)
	}
	return s, nil
}

// save writes state.json atomically and durably.
func (l Layout) save(s *Status, now time.Time) error {
	s.UpdatedAt = now.UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode ota state: %w", err)
	}
	if err := atomicfile.WriteFile(l.statePath(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save ota state: %w", err)
	}
	return nil
}
