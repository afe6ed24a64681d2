package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/iotagent/iotagent/internal/atomicfile"
	"github.com/iotagent/iotagent/internal/statefile"
)

// LastJob is the last job execution the runner finished: its final
// status decided (STATE/jobs/inflight.json says until the service has
// acknowledged it). It is
// kept in STATE/jobs/last.json, so that a job the agent rejected without
// running a handler (an unknown operation, a document that does not
// parse) shows in iotagent jobs list too, and so that the list works
// while the agent is not running.
type LastJob struct {
	JobID           string            `json:"job_id"`
	ExecutionNumber int64             `json:"execution_number,omitempty"`
	Operation       string            `json:"operation,omitempty"` // "" when the document has none
	Status          string            `json:"status"`              // SUCCEEDED, FAILED or REJECTED
	Details         map[string]string `json:"details,omitempty"`   // "reason" for FAILED and REJECTED
	EndedAt         time.Time         `json:"ended_at"`
}

// LastFile is where the last finished job is kept, under the state dir.
func LastFile(stateDir string) string { return filepath.Join(stateDir, "jobs", "last.json") }

// ReadLast reads the last finished job from stateDir; nil when none is
// recorded.
func ReadLast(stateDir string) (*LastJob, error) {
	b, err := os.ReadFile(LastFile(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("last job: %w", err)
	}
	var l LastJob
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("last job %s: %w", LastFile(stateDir), err)
	}
	return &l, nil
}

// recoverLast moves a damaged record of the last job aside and records
// it (internal/statefile); New calls it, so that the agent recovers it at
// start. ReadLast only reads.
func recoverLast(stateDir string) {
	var l LastJob
	_, _, _ = statefile.ReadJSON(stateDir, LastFile(stateDir), &l, nil,
		statefile.Then("the record of the last finished job is lost; the next job that finishes writes a new one"))
}

// saveLast records l as the last finished job.
func (r *Runner) saveLast(l LastJob) error {
	path := LastFile(r.o.StateDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save last job: %w", err)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("save last job: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("save last job: %w", err)
	}
	return nil
}

// LastJob is the last job the runner finished, as recorded; nil when none.
func (r *Runner) LastJob() *LastJob {
	l, err := ReadLast(r.o.StateDir)
	if err != nil {
		return nil
	}
	return l
}
