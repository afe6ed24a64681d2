package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// ReadJSON reads the JSON state file path into v and checks it with valid
// (nil: any value that decodes). It returns found false with a nil error
// when there is no file. A file that cannot be read (other than for
// permission, which is the caller's to report), does not decode or is not
// valid is recovered: moved aside, then then (when not nil) is called with
// the moved copy's path and returns what the caller does instead (the
// event's Action), and the event is recorded. ReadJSON then returns found
// false and the event, so that the caller starts fresh. The error is
// non-nil only for a permission problem or when the file could not be
// moved aside.
func ReadJSON(stateDir, path string, v any, valid func() error, then func(moved string) string) (found bool, rec *Event, err error) {
	var ev Event
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil, nil
	case errors.Is(err, fs.ErrPermission):
		return false, nil, fmt.Errorf("read %s: %w", path, err)
	case err != nil:
		ev.Reason = "cannot read it: " + err.Error()
	case len(b) == 0:
		ev.Reason = "empty file"
	default:
		if err := json.Unmarshal(b, v); err != nil {
			ev.Reason = "not valid JSON: " + err.Error()
		} else if valid != nil {
			if err := valid(); err != nil {
				ev.Reason = err.Error()
			}
		}
	}
	if ev.Reason == "" {
		return true, nil, nil
	}
	ev.File, ev.At = path, time.Now().UTC()
	moved, err := MoveAside(path, ev.At)
	if err != nil {
		ev.Action = "could not move it aside: " + err.Error()
		_ = Record(stateDir, ev)
		return false, &ev, fmt.Errorf("%s: %w: %s: %w", path, ErrUnreadable, ev.Reason, err)
	}
	ev.MovedTo = moved
	if then != nil {
		ev.Action = then(moved)
	}
	if err := Record(stateDir, ev); err != nil {
		return false, &ev, err
	}
	return false, &ev, nil
}

// Then is a then for ReadJSON with a fixed action.
func Then(action string) func(string) string { return func(string) string { return action } }
