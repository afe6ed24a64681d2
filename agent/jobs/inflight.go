package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/iotagent/iotagent/internal/atomicfile"
	"github.com/iotagent/iotagent/internal/statefile"
)

// inflight is the job being run, persisted so that a restart resumes it.
type inflight struct {
	JobID           string `json:"job_id"`
	ExecutionNumber int64  `json:"execution_number"`
	Operation       string `json:"operation"`
	// Marker is the handler's own progress note (Progress.Mark), e.g.
	// "restarting" before a restart-agent job restarts the agent.
	Marker string `json:"marker,omitempty"`
	// Final is the outcome, saved before it is sent, so that a restart
	// sends it again instead of running the job again.
	Final *final `json:"final,omitempty"`
}

type final struct {
	Status  string            `json:"status"`
	Details map[string]string `json:"details,omitempty"`
}

type store struct{ stateDir, path string }

func newStore(stateDir string) store {
	return store{stateDir, filepath.Join(stateDir, "jobs", "inflight.json")}
}

// load returns the in-flight job, nil when there is none. A record that
// cannot be read is moved aside and recorded (internal/statefile), and
// load returns nil: the job is still IN_PROGRESS in AWS IoT Jobs, so
// start-next hands it out again and it runs from the start.
func (s store) load() (*inflight, error) {
	var f inflight
	valid := func() error {
		if f.JobID == "" {
			return errors.New("incomplete: no job_id")
		}
		return nil
	}
	found, _, err := statefile.ReadJSON(s.stateDir, s.path, &f, valid,
		statefile.Then("the job in flight is forgotten: AWS IoT Jobs hands it out again while it is IN_PROGRESS, and it runs from the start"))
	if err != nil {
		return nil, fmt.Errorf("read in-flight job: %w", err)
	}
	if !found {
		return nil, nil
	}
	return &f, nil
}

func (s store) save(f *inflight) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("save in-flight job: %w", err)
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("save in-flight job: %w", err)
	}
	if err := atomicfile.WriteFile(s.path, b, 0o600); err != nil {
		return fmt.Errorf("save in-flight job: %w", err)
	}
	return nil
}

func (s store) clear() error {
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear in-flight job: %w", err)
	}
	return nil
}
