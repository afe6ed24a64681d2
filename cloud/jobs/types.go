package jobs

import (
	"errors"
	"fmt"
	"time"
)

// Errors for callers that branch (the REST API maps them to AWS's codes).
// The error values returned are *Error, which unwrap to one of these.
var (
	ErrNotFound = errors.New("jobs: not found")
	ErrExists   = errors.New("jobs: already exists")
	ErrInvalid  = errors.New("jobs: invalid request")
	// ErrConflict: the operation is not allowed in the current state.
	ErrConflict = errors.New("jobs: invalid state transition")
)

// Error is a service error: Kind is one of the sentinels and Msg the
// client-facing text.
type Error struct {
	Kind error
	Msg  string
	// cause, if set, is a finer sentinel (ErrBadPlaceholder) that the
	// error also unwraps to.
	cause error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{e.Kind, e.cause}
	}
	return []error{e.Kind}
}

func errf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Execution statuses.
const (
	StatusQueued     = "QUEUED"
	StatusInProgress = "IN_PROGRESS"
	StatusSucceeded  = "SUCCEEDED"
	StatusFailed     = "FAILED"
	StatusTimedOut   = "TIMED_OUT"
	StatusRejected   = "REJECTED"
	StatusRemoved    = "REMOVED"
	StatusCanceled   = "CANCELED"
)

// Job statuses.
const (
	JobInProgress = "IN_PROGRESS"
	JobCanceled   = "CANCELED"
	JobCompleted  = "COMPLETED"
)

// Target selections.
const (
	Snapshot   = "SNAPSHOT"
	Continuous = "CONTINUOUS"
)

// Limits of spec/jobs.md §7 and control-plane-rest.md.
const (
	MaxDocumentBytes       = 32768
	MaxDescription         = 2028
	MaxClientToken         = 64
	MaxStatusDetailKey     = 128
	MaxStatusDetailValue   = 1024
	MaxTimeoutMinutes      = 10080 // 7 days
	MinPresignExpirySec    = 60
	MaxPresignExpirySec    = 3600
	DefaultPresignExpiry   = 3600
	maxNotifyExecutions    = 10
	maxDocumentSourceBytes = 1350
)

// terminal reports whether an execution status is final.
func terminal(status string) bool {
	switch status {
	case StatusQueued, StatusInProgress:
		return false
	}
	return true
}

// PresignedURLConfig is CreateJob's presignedUrlConfig.
type PresignedURLConfig struct {
	RoleARN      string `json:"roleArn,omitempty"`
	ExpiresInSec int64  `json:"expiresInSec,omitempty"`
}

// TimeoutConfig is CreateJob's timeoutConfig.
type TimeoutConfig struct {
	InProgressTimeoutInMinutes int64 `json:"inProgressTimeoutInMinutes,omitempty"`
}

// CreateJobInput is CreateJob's request.
type CreateJobInput struct {
	JobID              string
	Targets            []string // thing and thing-group ARNs
	Document           string   // a JSON document, or
	DocumentSource     string   // an S3 URL of one in the object store
	Description        string
	TargetSelection    string // SNAPSHOT (default) or CONTINUOUS
	PresignedURLConfig *PresignedURLConfig
	TimeoutConfig      *TimeoutConfig
}

// Job is a job as stored.
type Job struct {
	JobID              string              `json:"jobId"`
	ARN                string              `json:"jobArn"`
	Seq                int64               `json:"seq"` // creation order
	Targets            []string            `json:"targets"`
	TargetSelection    string              `json:"targetSelection"`
	Description        string              `json:"description,omitempty"`
	Document           string              `json:"document"`
	DocumentSource     string              `json:"documentSource,omitempty"`
	PresignedURLConfig *PresignedURLConfig `json:"presignedUrlConfig,omitempty"`
	TimeoutConfig      *TimeoutConfig      `json:"timeoutConfig,omitempty"`
	Status             string              `json:"status"`
	ForceCanceled      bool                `json:"forceCanceled,omitempty"`
	ReasonCode         string              `json:"reasonCode,omitempty"`
	Comment            string              `json:"comment,omitempty"`
	CreatedAt          time.Time           `json:"createdAt"`
	LastUpdatedAt      time.Time           `json:"lastUpdatedAt"`
	CompletedAt        time.Time           `json:"completedAt,omitzero"`

	// Process counts the job's executions by status (not stored).
	Process map[string]int `json:"-"`
}

// Execution is a job execution as stored.
type Execution struct {
	JobID           string            `json:"jobId"`
	ThingName       string            `json:"thingName"`
	Status          string            `json:"status"`
	ForceCanceled   bool              `json:"forceCanceled,omitempty"`
	StatusDetails   map[string]string `json:"statusDetails,omitempty"`
	QueuedAt        time.Time         `json:"queuedAt"`
	StartedAt       time.Time         `json:"startedAt,omitzero"`
	LastUpdatedAt   time.Time         `json:"lastUpdatedAt"`
	VersionNumber   int64             `json:"versionNumber"`
	ExecutionNumber int64             `json:"executionNumber"`
	// StepDeadline and InProgressDeadline are the running timers (zero: none).
	StepDeadline       time.Time `json:"stepDeadline,omitzero"`
	InProgressDeadline time.Time `json:"inProgressDeadline,omitzero"`
	Seq                int64     `json:"seq"` // the job's creation order
}

// deadline is the earlier running timer, or zero.
func (e *Execution) deadline() time.Time {
	d := e.InProgressDeadline
	if !e.StepDeadline.IsZero() && (d.IsZero() || e.StepDeadline.Before(d)) {
		d = e.StepDeadline
	}
	return d
}

// timer names the timer that runs out first: "step" or "in-progress"
// (or "" when none runs).
func (e *Execution) timer() string {
	switch d := e.deadline(); {
	case d.IsZero():
		return ""
	case d.Equal(e.StepDeadline):
		return "step"
	}
	return "in-progress"
}

// SecondsBeforeTimedOut is approximateSecondsBeforeTimedOut at now (0: no
// timer running).
func (e *Execution) SecondsBeforeTimedOut(now time.Time) int64 {
	d := e.deadline()
	if d.IsZero() || e.Status != StatusInProgress {
		return 0
	}
	left := d.Sub(now)
	if left <= 0 {
		return 0
	}
	return int64((left + time.Second - 1) / time.Second)
}

func (e *Execution) clone() Execution {
	c := *e
	if e.StatusDetails != nil {
		c.StatusDetails = make(map[string]string, len(e.StatusDetails))
		for k, v := range e.StatusDetails {
			c.StatusDetails[k] = v
		}
	}
	return c
}
