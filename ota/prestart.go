package ota

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/iotagent/iotagent/internal/statefile"
)

// Decision is what PreStart decided.
type Decision struct {
	// Slot is the slot that will start (STATE/ota/current).
	Slot string
	// Trial is true when it is the new version on trial (Start counts it).
	Trial bool
	Start int
	// RolledBack is set when PreStart rolled back now, with the reason.
	RolledBack bool
	Reason     string
}

// PreStart decides, before every start of the agent, which slot starts.
// It must run from the committed (known-good) binary, e.g. as systemd's
// ExecStartPre=STATE/ota/committed/iotagent ota prestart. During a trial
// it counts the start and rolls back when the new version recorded a
// failure, is not an executable for this CPU, or used up its starts. It
// repairs the symlinks from state.json in every case. With no OTA state
// it does nothing.
func PreStart(stateDir string, now time.Time) (Decision, error) {
	l := NewLayout(stateDir)
	st, err := l.load()
	if errors.Is(err, ErrNotInitialized) {
		return Decision{}, nil
	}
	if err != nil {
		if st, err = l.recoverState(err, now); err != nil {
			return Decision{}, err
		}
		return Decision{Slot: st.Active, Reason: st.Reason}, nil
	}
	if st.State != Confirm {
		if err := l.repairWith(&st); err != nil {
			return Decision{}, err
		}
		return Decision{Slot: st.Active}, nil
	}
	max := st.MaxStarts
	if max <= 0 {
		max = DefaultMaxStarts
	}
	var reason string
	switch {
	case st.TrialFailure != "":
		reason = "version " + st.Release.Version + " failed its trial: " + st.TrialFailure
	case CheckBinary(l.SlotBinary(st.Slot)) != nil:
		reason = fmt.Sprintf("version %s cannot start: %v", st.Release.Version, CheckBinary(l.SlotBinary(st.Slot)))
	case st.Starts >= max:
		reason = fmt.Sprintf("version %s did not commit in %d starts (it crashed, hung, exited or could not connect)", st.Release.Version, max)
	}
	if reason != "" {
		if err := rollback(l, &st, reason, now); err != nil {
			return Decision{}, err
		}
		return Decision{Slot: st.Active, RolledBack: true, Reason: reason}, nil
	}
	st.Starts++
	if err := l.save(&st, now); err != nil {
		return Decision{}, err
	}
	if err := l.repairWith(&st); err != nil {
		return Decision{}, err
	}
	return Decision{Slot: st.Slot, Trial: true, Start: st.Starts}, nil
}

// recoverState replaces a state.json that cannot be read (a torn write on
// a file system without ordered writes, a disk error) with a fresh Idle
// state whose committed slot is the one the committed link points to, or
// else the one holding a binary for this CPU; any trial is abandoned. The
// bad file is kept as state.json.corrupt-TIMESTAMP and the event recorded
// in the state journal (internal/statefile). It fails, with cause, when no
// slot holds a usable binary.
func (l Layout) recoverState(cause error, now time.Time) (Status, error) {
	slot := linkSlot(l.Committed())
	if slot == "" || CheckBinary(l.SlotBinary(slot)) != nil {
		slot = ""
		for _, s := range Slots {
			if CheckBinary(l.SlotBinary(s)) == nil {
				slot = s
				break
			}
		}
	}
	if slot == "" {
		return Status{}, fmt.Errorf("%w; no slot holds a usable binary", cause)
	}
	action := fmt.Sprintf("started again from slot %s (the committed link, or the slot holding a usable binary); any update or trial in progress was abandoned", slot)
	moved, err := l.moveAside(cause, action, now)
	if err != nil {
		return Status{}, errors.Join(cause, err)
	}
	st := Status{State: Idle, Active: slot, MaxStarts: DefaultMaxStarts,
		Reason: fmt.Sprintf("recovered slot %s after an unreadable state (%v); the bad file is %s", slot, cause, moved)}
	if err := l.save(&st, now); err != nil {
		return Status{}, err
	}
	return st, l.repairWith(&st)
}

// moveAside moves state.json aside and records it in the state journal
// (internal/statefile), whose state dir is the parent of STATE/ota.
func (l Layout) moveAside(cause error, action string, now time.Time) (string, error) {
	ev, err := statefile.Recover(filepath.Dir(l.Dir), l.statePath(), statefile.Event{At: now, Reason: cause.Error(), Action: action})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return ev.MovedTo, nil
}
