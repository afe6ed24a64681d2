package jobs

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/iotagent/iotagent/cloud/store"
)

// ErrVersionMismatch: an expectedVersion does not match the execution's
// version (AWS's VersionConflictException).
var ErrVersionMismatch = errors.New("jobs: version mismatch")

// CancelJobExecution cancels one thing's execution of a job, as AWS's
// CancelJobExecution: a QUEUED execution becomes CANCELED; an IN_PROGRESS
// one only with force (and forceCanceled is set); a terminal one cannot be
// canceled (ErrConflict). expectedVersion, if not nil, must match
// (ErrVersionMismatch); details, if not nil, replace the statusDetails.
func (s *Service) CancelJobExecution(thing, jobID string, force bool, expectedVersion *int64, details map[string]string) error {
	for k, v := range details {
		if !validDetailKey(k) {
			return errf(ErrInvalid, "statusDetails key %q must be 1-%d of [a-zA-Z0-9:_-]", truncate(k, 40), MaxStatusDetailKey)
		}
		if msg := checkDetailValue(v); msg != "" {
			return errf(ErrInvalid, "statusDetails.%s %s", truncate(k, 40), msg)
		}
	}
	if len(details) > maxCancelDetails {
		return errf(ErrInvalid, "statusDetails has %d entries; at most %d are allowed", len(details), maxCancelDetails)
	}
	s.mu.Lock()
	e := s.things[thing][jobID]
	switch {
	case e == nil:
		s.mu.Unlock()
		return errf(ErrNotFound, "Job execution %s of thing %s does not exist", jobID, thing)
	case terminal(e.Status):
		s.mu.Unlock()
		return errf(ErrConflict, "Job execution %s of thing %s is %s and cannot be canceled", jobID, thing, e.Status)
	case e.Status == StatusInProgress && !force:
		s.mu.Unlock()
		return errf(ErrConflict, "Job execution %s of thing %s is IN_PROGRESS: only a forced cancel (--force) cancels it", jobID, thing)
	case expectedVersion != nil && *expectedVersion != e.VersionNumber:
		s.mu.Unlock()
		return errf(ErrVersionMismatch, "Job execution %s of thing %s is at version %d, not %d", jobID, thing, e.VersionNumber, *expectedVersion)
	}
	now := s.o.Now()
	before := s.pendingState(thing)
	saved := e.clone()
	e.ForceCanceled = e.Status == StatusInProgress
	e.Status, e.LastUpdatedAt = StatusCanceled, now
	e.StepDeadline, e.InProgressDeadline = time.Time{}, time.Time{}
	if details != nil {
		e.StatusDetails = details
	}
	if err := s.saveExecution(e); err != nil {
		*e = saved
		s.mu.Unlock()
		return err
	}
	s.retime(e)
	s.log.Info("job execution canceled", "thing", thing, "job", jobID, "was", saved.Status,
		"force", e.ForceCanceled, "by", "CancelJobExecution")
	s.completeIfDone(jobID, now)
	s.sendUnlock(s.notifications(thing, before, now))
	return nil
}

// maxCancelDetails is AWS's limit on CancelJobExecution's statusDetails.
const maxCancelDetails = 10

// DeleteJob deletes a job and all its executions, as AWS's DeleteJob. A job
// that is IN_PROGRESS is deleted only with force (ErrConflict otherwise);
// things whose pending executions change are notified.
func (s *Service) DeleteJob(jobID string, force bool) error {
	s.mu.Lock()
	j, ok := s.jobs[jobID]
	if !ok {
		s.mu.Unlock()
		return errf(ErrNotFound, "Job %s does not exist", jobID)
	}
	if j.Status == JobInProgress && !force {
		s.mu.Unlock()
		return errf(ErrConflict, "Job %s is IN_PROGRESS: only a forced delete (--force) deletes it; cancel it first otherwise", jobID)
	}
	things := slices.Clone(s.byJob[jobID])
	err := s.o.DB.Update(func(tx *store.Tx) error {
		for _, t := range things {
			if err := tx.Delete(bucketExecutions, t+"/"+jobID); err != nil {
				return err
			}
		}
		return tx.Delete(bucketJobs, jobID)
	})
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("delete job %s: store: %w", jobID, err)
	}
	now := s.o.Now()
	var msgs []message
	for _, t := range things {
		before := s.pendingState(t)
		e := s.things[t][jobID]
		s.unindexLocked(e)
		if !terminal(e.Status) {
			s.log.Info("job execution deleted", "thing", t, "job", jobID, "was", e.Status, "by", "DeleteJob")
		}
		msgs = append(msgs, s.notifications(t, before, now)...)
	}
	delete(s.jobs, jobID)
	delete(s.byJob, jobID)
	s.log.Info("job deleted", "job", jobID, "status", j.Status, "executions", len(things), "force", force)
	s.sendUnlock(msgs)
	return nil
}

// DeleteJobExecution deletes one thing's execution of a job, as AWS's
// DeleteJobExecution: executionNumber must be the execution's
// (ErrNotFound otherwise), and one that is not terminal is deleted only
// with force (ErrConflict).
func (s *Service) DeleteJobExecution(thing, jobID string, executionNumber int64, force bool) error {
	s.mu.Lock()
	e := s.things[thing][jobID]
	if e == nil || e.ExecutionNumber != executionNumber {
		s.mu.Unlock()
		return errf(ErrNotFound, "Job execution %s number %d of thing %s does not exist", jobID, executionNumber, thing)
	}
	if !terminal(e.Status) && !force {
		s.mu.Unlock()
		return errf(ErrConflict, "Job execution %s of thing %s is %s: only a forced delete (--force) deletes an execution that is not in a terminal state", jobID, thing, e.Status)
	}
	if err := s.o.DB.Delete(bucketExecutions, thing+"/"+jobID); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("delete execution %s of %s: %w", jobID, thing, err)
	}
	now := s.o.Now()
	before := s.pendingState(thing)
	s.unindexLocked(e)
	s.byJob[jobID] = slices.DeleteFunc(s.byJob[jobID], func(t string) bool { return t == thing })
	if !terminal(e.Status) {
		s.log.Info("job execution deleted", "thing", thing, "job", jobID, "was", e.Status, "by", "DeleteJobExecution")
	}
	s.completeIfDone(jobID, now)
	s.sendUnlock(s.notifications(thing, before, now))
	return nil
}

// unindexLocked forgets an execution (but not its place in byJob).
func (s *Service) unindexLocked(e *Execution) {
	delete(s.timed, e)
	if m := s.things[e.ThingName]; m != nil {
		delete(m, e.JobID)
		if len(m) == 0 {
			delete(s.things, e.ThingName)
		}
	}
}
