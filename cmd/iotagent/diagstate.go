package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/iotagent/iotagent/internal/boltscan"
	"github.com/iotagent/iotagent/internal/statefile"
)

// checkState reports the recoveries of state files (STATE/recovered.json)
// whose moved-aside copy nobody has dealt with yet, moved-aside copies the
// journal does not know, and an agent.db that the agent would have to
// recover at its next start.
func (d *diagRun) checkState() {
	dir := d.cfg.StateDir
	var warns, fails []string
	evs, err := statefile.Events(dir)
	if err != nil {
		warns = append(warns, err.Error())
	}
	known := map[string]bool{}
	for _, e := range evs {
		known[e.MovedTo] = true
		if e.MovedTo == "" || !exists(e.MovedTo) {
			continue
		}
		line := fmt.Sprintf("%s recovered %s: %s", e.File, stamp(e.At), e.Summary())
		if strings.HasPrefix(e.Action, "not rebuilt") || strings.Contains(e.Action, "could not") || e.LostUnknown || e.Lost > 0 {
			fails = append(fails, line)
		} else {
			warns = append(warns, line)
		}
	}
	for _, m := range statefile.MovedAside(dir, 2) {
		if !known[m] {
			warns = append(warns, "moved-aside copy not in the journal: "+m)
		}
	}
	if db := filepath.Join(dir, "agent.db"); !d.running {
		if f, err := os.Open(db); err == nil {
			fi, _ := f.Stat()
			if fi.Size() == 0 {
				fails = append(fails, db+" is empty: the agent will move it aside at its next start (queued messages in it are lost)")
			} else if rep, _ := boltscan.Scan(f, fi.Size(), false); !rep.Sound() {
				fails = append(fails, fmt.Sprintf("%s is damaged (%s): the agent will move it aside and salvage what reads at its next start", db, strings.Join(rep.Problems[:min(2, len(rep.Problems))], "; ")))
			}
			f.Close()
		}
	}
	fix := "look at each moved-aside copy (FILE.corrupt-TIMESTAMP), then delete it; docs/state-files.md says what the agent did for each file"
	switch {
	case len(fails) > 0:
		d.add("state files", fail, strings.Join(append(fails, warns...), "; "), fix)
	case len(warns) > 0:
		d.add("state files", warn, strings.Join(warns, "; "), fix)
	default:
		d.add("state files", pass, "no state file in "+dir+" needed recovery", "")
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
