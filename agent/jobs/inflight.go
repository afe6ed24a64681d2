package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/iotagent/iotagent/internal/atomicfile"
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

type store struct{ path string }

func newStore(stateDir string) store { return store{filepath.Join(stateDir, "jobs", "inflight.json")} }

func (s store) load() (*inflight, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read in-flight job: %w", err)
	}
	var f inflight
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse in-flight job %s: %w", s.path, err)
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
