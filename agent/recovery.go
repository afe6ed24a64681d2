package agent

import (
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/internal/statefile"
)

// The agent's view of the state journal (internal/statefile): every
// recovery of a state file, by the agent itself or by a part of it (the
// jobs runner, the OTA updater, provisioning, rotation, Device Defender)
// or by ota prestart before it started. The agent logs each event once
// (at start, those whose moved-aside copy is still there), shows them in
// the local API's "state" section and reports the newest in the shadow as
// reported.recovered.

// reportedRecoveries bounds reported.recovered.
const reportedRecoveries = 5

type recoveryState struct {
	mu      sync.Mutex
	mod     time.Time // the journal's mtime and size when last read
	size    int64
	events  []statefile.Event
	logged  map[string]bool
	readErr string
}

func eventKey(e statefile.Event) string {
	return e.File + "\x00" + e.MovedTo + "\x00" + e.At.Format(time.RFC3339Nano)
}

// refreshRecoveries reads the journal when it changed and logs the events
// not logged yet. At start (first true) it logs only those whose moved
// copy is still there: the others were dealt with. It reports whether
// there were new events.
func (a *Agent) refreshRecoveries(first bool) bool {
	r := &a.recovery
	path := filepath.Join(a.cfg.StateDir, statefile.JournalFile)
	fi, err := os.Stat(path)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logged == nil {
		r.logged = map[string]bool{}
	}
	if err != nil || (fi.ModTime().Equal(r.mod) && fi.Size() == r.size) {
		return false
	}
	evs, err := statefile.Events(a.cfg.StateDir)
	if err != nil {
		if r.readErr != err.Error() {
			r.readErr = err.Error()
			a.log.Error("state journal unreadable", "file", path, "err", err)
		}
		return false
	}
	r.mod, r.size, r.readErr = fi.ModTime(), fi.Size(), ""
	r.events = evs
	changed := false
	for _, e := range evs {
		k := eventKey(e)
		if r.logged[k] {
			continue
		}
		r.logged[k] = true
		if first && (e.MovedTo == "" || !exists(e.MovedTo)) {
			continue
		}
		changed = true
		args := []any{"file", e.File, "reason", e.Reason, "at", e.At}
		if e.MovedTo != "" {
			args = append(args, "moved_to", e.MovedTo)
		}
		if e.Action != "" {
			args = append(args, "action", e.Action)
		}
		if loss := e.Loss(); loss != "" {
			args = append(args, "messages", loss)
		}
		a.log.Warn("state file recovered", args...)
	}
	return changed
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// recoveries returns the journal as last read, oldest first.
func (a *Agent) recoveries() []statefile.Event {
	a.recovery.mu.Lock()
	defer a.recovery.mu.Unlock()
	return append([]statefile.Event(nil), a.recovery.events...)
}

// reportedRecovered is reported.recovered: the newest events, newest
// first, each short enough for the shadow.
func (a *Agent) reportedRecovered() []any {
	evs := a.recoveries()
	out := []any{}
	for i := len(evs) - 1; i >= 0 && len(out) < reportedRecoveries; i-- {
		e := evs[i]
		m := map[string]any{"file": e.File, "at": e.At.Unix(), "reason": cut(e.Reason, 160)}
		if e.MovedTo != "" {
			m["moved_to"] = e.MovedTo
		}
		if e.Salvaged != 0 || e.Lost != 0 || e.LostUnknown {
			m["salvaged"], m["lost"] = e.Salvaged, e.Lost
			if e.LostUnknown {
				m["lost_unknown"] = true
			}
		}
		out = append(out, m)
	}
	return out
}

func cut(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-3]) + "..."
	}
	return s
}

// stateSection is the local API's "state" section.
func (a *Agent) stateSection() localapi.State {
	a.refreshRecoveries(false)
	out := localapi.State{Dir: a.cfg.StateDir, Journal: filepath.Join(a.cfg.StateDir, statefile.JournalFile)}
	for _, e := range a.recoveries() {
		out.Recovered = append(out.Recovered, localapi.Recovery{
			File: e.File, MovedTo: e.MovedTo, At: e.At, Reason: e.Reason, Action: e.Action,
			Salvaged: e.Salvaged, Lost: e.Lost, LostUnknown: e.LostUnknown,
			MovedCopyPresent: e.MovedTo != "" && exists(e.MovedTo),
		})
	}
	out.MovedAside = statefile.MovedAside(a.cfg.StateDir, 2)
	a.recovery.mu.Lock()
	out.Error = a.recovery.readErr
	a.recovery.mu.Unlock()
	return out
}
