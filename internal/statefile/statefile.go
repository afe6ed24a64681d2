package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/internal/atomicfile"
)

// JournalFile is the journal's name in the state directory.
const JournalFile = "recovered.json"

// MaxEvents bounds the journal: older events are forgotten.
const MaxEvents = 32

// CorruptInfix separates a moved-aside file's original name from its
// timestamp: agent.db.corrupt-20260101T120000Z.
const CorruptInfix = ".corrupt-"

// ErrUnreadable is wrapped by errors about a state file that was moved
// aside because it could not be read.
var ErrUnreadable = errors.New("state file unreadable")

// Event is one recovery of a state file.
type Event struct {
	// File is the path the agent owns; MovedTo is where the bad copy is
	// kept ("" when nothing was left to move, e.g. a missing file).
	File    string    `json:"file"`
	MovedTo string    `json:"moved_to,omitempty"`
	At      time.Time `json:"at"`
	// Reason is why the file could not be used.
	Reason string `json:"reason"`
	// Action is what the agent did instead ("started a new database",
	// "rebuilt from device.crt", ...).
	Action string `json:"action,omitempty"`
	// Salvaged and Lost count records (outbox messages) kept and known
	// lost; LostUnknown is set when part of the file could not be read at
	// all, so more may be lost than Lost says.
	Salvaged    int  `json:"salvaged,omitempty"`
	Lost        int  `json:"lost,omitempty"`
	LostUnknown bool `json:"lost_unknown,omitempty"`
}

// Summary is the event as one line for people: the file, what went
// wrong, what was done and what was lost.
func (e Event) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", e.File, e.Reason)
	if e.MovedTo != "" {
		fmt.Fprintf(&b, "; moved aside to %s", e.MovedTo)
	}
	if e.Action != "" {
		fmt.Fprintf(&b, "; %s", e.Action)
	}
	if s := e.Loss(); s != "" {
		fmt.Fprintf(&b, "; %s", s)
	}
	return b.String()
}

// Loss says what the recovery kept and lost, "" when it is not about
// records.
func (e Event) Loss() string {
	lost := fmt.Sprintf("%d lost", e.Lost)
	switch {
	case e.LostUnknown && e.Lost == 0:
		lost = "an unknown number lost"
	case e.LostUnknown:
		lost = fmt.Sprintf("at least %d lost (an unknown number more)", e.Lost)
	case e.Salvaged == 0 && e.Lost == 0:
		return ""
	}
	return fmt.Sprintf("%d messages salvaged, %s", e.Salvaged, lost)
}

// MovedAsideName is the name MoveAside gives path at time at.
func MovedAsideName(path string, at time.Time) string {
	return path + CorruptInfix + at.UTC().Format("20060102T150405Z")
}

// MoveAside renames path to path.corrupt-<UTC timestamp> (with a -N suffix
// if that exists already) and syncs the directory. It returns the new
// name. A missing path is an error wrapping fs.ErrNotExist.
func MoveAside(path string, at time.Time) (string, error) {
	base := MovedAsideName(path, at)
	dst := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, dst); err != nil {
		return "", fmt.Errorf("move %s aside: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return dst, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// journals serialises the journal writes of this process per state dir.
var journals sync.Map // state dir -> *sync.Mutex

func lockJournal(stateDir string) func() {
	v, _ := journals.LoadOrStore(filepath.Clean(stateDir), new(sync.Mutex))
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Recover moves path aside (when it exists) and records ev in stateDir's
// journal. ev.File defaults to path and ev.At to now; ev.MovedTo is set
// from the move. It returns the event as recorded. When the move fails
// the file stays where it is and the error says so; the event is recorded
// either way, so that the failure is not silent.
func Recover(stateDir, path string, ev Event) (Event, error) {
	if ev.File == "" {
		ev.File = path
	}
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	ev.At = ev.At.UTC()
	var moveErr error
	if _, err := os.Lstat(path); err == nil {
		ev.MovedTo, moveErr = MoveAside(path, ev.At)
		if moveErr != nil {
			ev.Action = strings.TrimPrefix(ev.Action+"; ", "; ") + "could not move it aside: " + moveErr.Error()
		}
	}
	if err := Record(stateDir, ev); err != nil {
		return ev, errors.Join(moveErr, err)
	}
	return ev, moveErr
}

// Record appends ev to stateDir's journal, keeping the last MaxEvents. A
// journal that cannot be read is itself moved aside and a new one started
// with an event that says so.
func Record(stateDir string, ev Event) error {
	unlock := lockJournal(stateDir)
	defer unlock()
	evs, err := readJournal(stateDir)
	if err != nil {
		path := filepath.Join(stateDir, JournalFile)
		self := Event{File: path, At: ev.At, Reason: err.Error(), Action: "started a new journal; earlier recoveries are in the moved copy"}
		if moved, merr := MoveAside(path, ev.At); merr == nil {
			self.MovedTo = moved
		}
		evs = []Event{self}
	}
	evs = append(evs, ev)
	if len(evs) > MaxEvents {
		evs = evs[len(evs)-MaxEvents:]
	}
	b, err := json.MarshalIndent(evs, "", "  ")
	if err != nil {
		return fmt.Errorf("record recovery: %w", err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("record recovery: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(stateDir, JournalFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("record recovery: %w", err)
	}
	return nil
}

// Events returns stateDir's journal, oldest first (none when there is no
// journal).
func Events(stateDir string) ([]Event, error) {
	unlock := lockJournal(stateDir)
	defer unlock()
	return readJournal(stateDir)
}

func readJournal(stateDir string) ([]Event, error) {
	path := filepath.Join(stateDir, JournalFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var evs []Event
	if err := json.Unmarshal(b, &evs); err != nil {
		return nil, fmt.Errorf("parse %s: %w: %w", path, ErrUnreadable, err)
	}
	return evs, nil
}

// MovedAside lists the moved-aside copies in dir and in its
// subdirectories down to depth levels, sorted.
func MovedAside(dir string, depth int) []string {
	var out []string
	var walk func(d string, level int)
	walk = func(d string, level int) {
		entries, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			switch {
			case strings.Contains(e.Name(), CorruptInfix):
				out = append(out, p)
			case e.IsDir() && level < depth && e.Type()&fs.ModeSymlink == 0:
				walk(p, level+1)
			}
		}
	}
	walk(dir, 0)
	sort.Strings(out)
	return out
}
