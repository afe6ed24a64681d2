package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/s3"
	"github.com/iotagent/iotagent/cloud/store"
)

// Buckets of the store database.
const (
	bucketJobs       = "jobs"
	bucketExecutions = "jobs.executions" // key: thing + "/" + jobId
)

// DefaultTick is how often Run checks the timers by default.
const DefaultTick = time.Second

// Registry is what the service needs of the thing registry;
// *registry.Registry satisfies it. Thing groups are static groups whose
// members ThingGroupsOf reports.
type Registry interface {
	Region() string
	Account() string
	DescribeThing(name string) (registry.Thing, error)
	ListThings() ([]registry.Thing, error)
	DescribeThingGroup(name string) (registry.ThingGroup, error)
	ThingGroupsOf(thing string) ([]string, error)
}

// Files is the object store behind documentSource and presigned URLs;
// *s3.Store satisfies it.
type Files interface {
	Get(bucket, key string, limit int64) ([]byte, error)
	PresignGet(bucket, key string, expires time.Duration) (string, error)
}

// Options configure a Service.
type Options struct {
	DB       *store.DB // required
	Registry Registry  // required
	// Files resolves documentSource and presigns placeholders; nil makes
	// both invalid in CreateJob.
	Files Files
	// Publish sends notify and notify-next to the thing's subscribers.
	Publish func(topic string, payload []byte) error
	// PublishTo sends an accepted/rejected answer to one client only.
	PublishTo func(clientID, topic string, payload []byte) error
	// Fault, if set, is asked before every MQTT request (op is the API
	// name, e.g. "UpdateJobExecution"); a non-empty answer, such as
	// "RequestThrottled" or "InternalError", rejects the request with
	// that code. A test seam: nil in production.
	Fault func(thing, op string) string
	// Ticks drives Run's timer checks; nil means a time.Ticker of Tick.
	Ticks <-chan time.Time
	Tick  time.Duration // default DefaultTick
	Now   func() time.Time
	// Logger gets failed publishes (debug); nil discards.
	Logger *slog.Logger
}

// Service is the Jobs service. It is safe for concurrent use.
type Service struct {
	o   Options
	log *slog.Logger

	mu     sync.Mutex
	jobs   map[string]*Job
	seq    int64
	things map[string]map[string]*Execution // thing -> jobId -> execution
	byJob  map[string][]string              // jobId -> things, in creation order
	timed  map[*Execution]struct{}          // executions with a running timer

	pubMu sync.Mutex // keeps outgoing messages in state order
}

// New loads the stored jobs. It starts nothing.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.Registry == nil {
		return nil, fmt.Errorf("new jobs service: %w: DB and Registry are required", ErrInvalid)
	}
	if o.Publish == nil {
		o.Publish = func(string, []byte) error { return nil }
	}
	if o.PublishTo == nil {
		o.PublishTo = func(string, string, []byte) error { return nil }
	}
	if o.Tick <= 0 {
		o.Tick = DefaultTick
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{o: o, log: o.Logger, jobs: map[string]*Job{}, things: map[string]map[string]*Execution{},
		byJob: map[string][]string{}, timed: map[*Execution]struct{}{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	err := o.DB.ForEach(bucketJobs, "", func(k string, v []byte) error {
		var j Job
		if err := json.Unmarshal(v, &j); err != nil {
			return fmt.Errorf("job %s: %w", k, err)
		}
		if _, err := Placeholders(j.Document); err != nil {
			// Stored by an older iotsim that let it through; devices get an
			// InternalError for it until it is canceled or deleted.
			s.log.Warn("stored job has a document devices cannot be sent; cancel or delete it",
				"job", j.JobID, "err", err)
		}
		s.jobs[j.JobID] = &j
		s.seq = max(s.seq, j.Seq)
		return nil
	})
	if err == nil {
		var execs []*Execution
		err = o.DB.ForEach(bucketExecutions, "", func(k string, v []byte) error {
			var e Execution
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("execution %s: %w", k, err)
			}
			execs = append(execs, &e)
			return nil
		})
		slices.SortFunc(execs, func(a, b *Execution) int { return int(a.Seq - b.Seq) })
		for _, e := range execs {
			s.index(e)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("new jobs service: load: %w", err)
	}
	return s, nil
}

func (s *Service) index(e *Execution) {
	m := s.things[e.ThingName]
	if m == nil {
		m = map[string]*Execution{}
		s.things[e.ThingName] = m
	}
	m[e.JobID] = e
	s.byJob[e.JobID] = append(s.byJob[e.JobID], e.ThingName)
	s.retime(e)
}

// retime keeps the timed set in step with e's timers.
func (s *Service) retime(e *Execution) {
	if e.Status == StatusInProgress && !e.deadline().IsZero() {
		s.timed[e] = struct{}{}
	} else {
		delete(s.timed, e)
	}
}

// Run checks the execution timers on every tick until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	ticks := s.o.Ticks
	if ticks == nil {
		t := time.NewTicker(s.o.Tick)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
			if err := s.CheckTimeouts(); err != nil {
				s.log.Warn("check job timeouts", "err", err)
			}
		}
	}
}

// message is an outgoing MQTT message; clientID "" means a publish to
// subscribers.
type message struct {
	clientID string
	topic    string
	payload  []byte
}

// send publishes msgs in order. It is called with s.mu held and releases
// it, handing over to pubMu so that messages leave in state order.
func (s *Service) sendUnlock(msgs []message) {
	if len(msgs) == 0 {
		s.mu.Unlock()
		return
	}
	s.pubMu.Lock()
	s.mu.Unlock()
	defer s.pubMu.Unlock()
	for _, m := range msgs {
		var err error
		if m.clientID == "" {
			err = s.o.Publish(m.topic, m.payload)
		} else {
			err = s.o.PublishTo(m.clientID, m.topic, m.payload)
		}
		if err != nil {
			s.log.Debug("jobs publish failed", "client", m.clientID, "topic", m.topic, "err", err)
		}
	}
}

// CheckTimeouts times out every IN_PROGRESS execution whose step or
// in-progress timer has run out.
func (s *Service) CheckTimeouts() error {
	s.mu.Lock()
	now := s.o.Now()
	var due []*Execution
	for e := range s.timed {
		if d := e.deadline(); !d.IsZero() && !now.Before(d) {
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b *Execution) int {
		return strings.Compare(a.ThingName+"/"+a.JobID, b.ThingName+"/"+b.JobID)
	})
	var msgs []message
	var errs []error
	for _, e := range due {
		before := s.pendingState(e.ThingName)
		saved := e.clone()
		e.Status, e.LastUpdatedAt = StatusTimedOut, now
		e.StepDeadline, e.InProgressDeadline = time.Time{}, time.Time{}
		if err := s.saveExecution(e); err != nil {
			*e = saved
			errs = append(errs, err)
			continue
		}
		s.retime(e)
		s.log.Info("job execution timed out", "thing", e.ThingName, "job", e.JobID,
			"timer", saved.timer(), "started_at", saved.StartedAt, "version", e.VersionNumber)
		s.completeIfDone(e.JobID, now)
		msgs = append(msgs, s.notifications(e.ThingName, before, now)...)
	}
	s.sendUnlock(msgs)
	return errors.Join(errs...)
}

// saveExecution stores e (and its job's status, which may follow).
func (s *Service) saveExecution(e *Execution) error {
	if err := s.o.DB.PutJSON(bucketExecutions, e.ThingName+"/"+e.JobID, e); err != nil {
		return fmt.Errorf("save execution %s of %s: %w", e.JobID, e.ThingName, err)
	}
	return nil
}

// completeIfDone marks a SNAPSHOT job COMPLETED once every execution is
// terminal.
func (s *Service) completeIfDone(jobID string, now time.Time) {
	j := s.jobs[jobID]
	if j == nil || j.Status != JobInProgress || j.TargetSelection != Snapshot {
		return
	}
	for _, t := range s.byJob[jobID] {
		if !terminal(s.things[t][jobID].Status) {
			return
		}
	}
	j.Status, j.CompletedAt, j.LastUpdatedAt = JobCompleted, now, now
	if err := s.o.DB.PutJSON(bucketJobs, j.JobID, j); err != nil {
		s.log.Warn("save job", "job", j.JobID, "err", err)
	}
	s.log.Info("job completed", "job", j.JobID, "executions", len(s.byJob[jobID]))
}

// pending is a thing's pending set and head, for deciding notifications.
type pending struct {
	ids  []string // IN_PROGRESS then QUEUED, each in creation order
	head *Execution
}

// pendingExecutions lists a thing's QUEUED and IN_PROGRESS executions,
// IN_PROGRESS first, each group in creation order.
func (s *Service) pendingExecutions(thing string) []*Execution {
	var out []*Execution
	for _, e := range s.things[thing] {
		if !terminal(e.Status) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *Execution) int {
		ra, rb := a.Status != StatusInProgress, b.Status != StatusInProgress
		if ra != rb {
			if ra {
				return 1
			}
			return -1
		}
		return int(a.Seq - b.Seq)
	})
	return out
}

func (s *Service) pendingState(thing string) pending {
	ps := s.pendingExecutions(thing)
	p := pending{ids: make([]string, 0, len(ps))}
	for _, e := range ps {
		p.ids = append(p.ids, e.JobID)
	}
	if len(ps) > 0 {
		p.head = ps[0]
	}
	return p
}

// notifications compares a thing's pending state with before and builds
// notify (the set changed) and notify-next (the head changed).
func (s *Service) notifications(thing string, before pending, now time.Time) []message {
	after := s.pendingState(thing)
	var msgs []message
	a, b := slices.Clone(after.ids), slices.Clone(before.ids)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		msgs = append(msgs, message{topic: topicPrefix(thing) + "notify", payload: s.notifyPayload(thing, now)})
	}
	if after.head != before.head {
		msgs = append(msgs, message{topic: topicPrefix(thing) + "notify-next", payload: s.notifyNextPayload(after.head, now)})
	}
	return msgs
}

// Job returns a copy of a stored job with its process counts.
func (s *Service) jobCopyLocked(j *Job) Job {
	c := *j
	c.Targets = slices.Clone(j.Targets)
	c.Process = map[string]int{}
	for _, t := range s.byJob[j.JobID] {
		c.Process[s.things[t][j.JobID].Status]++
	}
	return c
}

// thingARN is the ARN of a thing.
func (s *Service) thingARN(name string) string {
	return "arn:aws:iot:" + s.o.Registry.Region() + ":" + s.o.Registry.Account() + ":thing/" + name
}

// resolveTargets turns target ARNs into thing names, in order, without
// duplicates.
func (s *Service) resolveTargets(targets []string) ([]string, error) {
	prefix := "arn:aws:iot:" + s.o.Registry.Region() + ":" + s.o.Registry.Account() + ":"
	var things []string
	seen := map[string]bool{}
	add := func(t string) {
		if !seen[t] {
			seen[t] = true
			things = append(things, t)
		}
	}
	var all []registry.Thing
	for _, arn := range targets {
		rest, ok := strings.CutPrefix(arn, prefix)
		if !ok {
			if strings.HasPrefix(arn, "arn:aws:iot:") {
				return nil, errf(ErrNotFound, "Target %s is not in this account and region", arn)
			}
			return nil, errf(ErrInvalid, "Target %s is not a thing or thing group ARN", arn)
		}
		kind, name, _ := strings.Cut(rest, "/")
		switch kind {
		case "thing":
			if _, err := s.o.Registry.DescribeThing(name); err != nil {
				return nil, targetErr(err, "Thing", name)
			}
			add(name)
		case "thinggroup":
			if _, err := s.o.Registry.DescribeThingGroup(name); err != nil {
				return nil, targetErr(err, "Thing group", name)
			}
			if all == nil {
				var err error
				if all, err = s.o.Registry.ListThings(); err != nil {
					return nil, fmt.Errorf("resolve group %s: %w", name, err)
				}
			}
			for _, t := range all {
				gs, err := s.o.Registry.ThingGroupsOf(t.Name)
				if err != nil {
					return nil, fmt.Errorf("resolve group %s: %w", name, err)
				}
				if slices.Contains(gs, name) {
					add(t.Name)
				}
			}
		default:
			return nil, errf(ErrInvalid, "Target %s is not a thing or thing group ARN", arn)
		}
	}
	return things, nil
}

func targetErr(err error, what, name string) error {
	if errors.Is(err, registry.ErrNotFound) {
		return errf(ErrNotFound, "%s %s does not exist", what, name)
	}
	return fmt.Errorf("resolve %s %s: %w", strings.ToLower(what), name, err)
}

// CreateJob validates in, resolves its targets and queues one execution
// per thing, notifying each.
func (s *Service) CreateJob(in CreateJobInput) (Job, error) {
	if err := s.validateCreate(&in); err != nil {
		return Job{}, err
	}
	things, err := s.resolveTargets(in.Targets)
	if err != nil {
		return Job{}, err
	}
	s.mu.Lock()
	if _, ok := s.jobs[in.JobID]; ok {
		s.mu.Unlock()
		return Job{}, errf(ErrExists, "Job %s already exists", in.JobID)
	}
	now := s.o.Now()
	s.seq++
	j := &Job{
		JobID: in.JobID, ARN: "arn:aws:iot:" + s.o.Registry.Region() + ":" + s.o.Registry.Account() + ":job/" + in.JobID,
		Seq: s.seq, Targets: slices.Clone(in.Targets), TargetSelection: in.TargetSelection,
		Description: in.Description, Document: in.Document, DocumentSource: in.DocumentSource,
		PresignedURLConfig: in.PresignedURLConfig, TimeoutConfig: in.TimeoutConfig,
		Status: JobInProgress, CreatedAt: now, LastUpdatedAt: now,
	}
	execs := make([]*Execution, 0, len(things))
	for _, t := range things {
		execs = append(execs, &Execution{JobID: j.JobID, ThingName: t, Status: StatusQueued, QueuedAt: now,
			LastUpdatedAt: now, VersionNumber: 1, ExecutionNumber: 1, Seq: j.Seq})
	}
	err = s.o.DB.Update(func(tx *store.Tx) error {
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		if err := tx.Put(bucketJobs, j.JobID, b); err != nil {
			return err
		}
		for _, e := range execs {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := tx.Put(bucketExecutions, e.ThingName+"/"+e.JobID, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.seq--
		s.mu.Unlock()
		return Job{}, fmt.Errorf("create job %s: store: %w", in.JobID, err)
	}
	s.jobs[j.JobID] = j
	var msgs []message
	for _, e := range execs {
		before := s.pendingState(e.ThingName)
		s.index(e)
		msgs = append(msgs, s.notifications(e.ThingName, before, now)...)
	}
	s.completeIfDone(j.JobID, now)
	out := s.jobCopyLocked(j)
	s.sendUnlock(msgs)
	return out, nil
}

// DescribeJob returns a job with its process counts.
func (s *Service) DescribeJob(jobID string) (Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobID]
	if !ok {
		return Job{}, errf(ErrNotFound, "Job %s does not exist", jobID)
	}
	return s.jobCopyLocked(j), nil
}

// GetJobDocument returns a job's document as created (placeholders kept).
func (s *Service) GetJobDocument(jobID string) (string, error) {
	j, err := s.DescribeJob(jobID)
	return j.Document, err
}

// ListJobs lists every job in creation order, optionally only those with
// the given status.
func (s *Service) ListJobs(status string) []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		if status == "" || j.Status == status {
			out = append(out, s.jobCopyLocked(j))
		}
	}
	slices.SortFunc(out, func(a, b Job) int { return int(a.Seq - b.Seq) })
	return out
}

// CancelJob cancels a job: its QUEUED executions become CANCELED, and with
// force its IN_PROGRESS ones too (forceCanceled). A COMPLETED job cannot
// be canceled (ErrConflict).
func (s *Service) CancelJob(jobID string, force bool, reasonCode, comment string) (Job, error) {
	s.mu.Lock()
	j, ok := s.jobs[jobID]
	if !ok {
		s.mu.Unlock()
		return Job{}, errf(ErrNotFound, "Job %s does not exist", jobID)
	}
	if j.Status == JobCompleted {
		s.mu.Unlock()
		return Job{}, errf(ErrConflict, "Job %s is already COMPLETED and cannot be canceled", jobID)
	}
	now := s.o.Now()
	var msgs []message
	var errs []error
	for _, t := range s.byJob[jobID] {
		e := s.things[t][jobID]
		if e.Status != StatusQueued && !(force && e.Status == StatusInProgress) {
			continue
		}
		before := s.pendingState(t)
		saved := e.clone()
		e.ForceCanceled = e.Status == StatusInProgress
		e.Status, e.LastUpdatedAt = StatusCanceled, now
		e.StepDeadline, e.InProgressDeadline = time.Time{}, time.Time{}
		if err := s.saveExecution(e); err != nil {
			*e = saved
			errs = append(errs, err)
			continue
		}
		s.retime(e)
		s.log.Info("job execution canceled", "thing", t, "job", jobID, "was", saved.Status,
			"force", e.ForceCanceled, "reason_code", reasonCode, "by", "CancelJob")
		msgs = append(msgs, s.notifications(t, before, now)...)
	}
	if j.Status != JobCanceled || force {
		j.Status, j.LastUpdatedAt = JobCanceled, now
		j.ForceCanceled = j.ForceCanceled || force
		if reasonCode != "" {
			j.ReasonCode = reasonCode
		}
		if comment != "" {
			j.Comment = comment
		}
		if err := s.o.DB.PutJSON(bucketJobs, j.JobID, j); err != nil {
			errs = append(errs, fmt.Errorf("cancel job %s: %w", jobID, err))
		}
	}
	out := s.jobCopyLocked(j)
	s.sendUnlock(msgs)
	if err := errors.Join(errs...); err != nil {
		return Job{}, err
	}
	return out, nil
}

// DescribeJobExecution returns a thing's execution of a job;
// executionNumber 0 means the latest.
func (s *Service) DescribeJobExecution(thing, jobID string, executionNumber int64) (Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.things[thing][jobID]
	if e == nil || (executionNumber != 0 && executionNumber != e.ExecutionNumber) {
		return Execution{}, errf(ErrNotFound, "Job execution %s of thing %s does not exist", jobID, thing)
	}
	return e.clone(), nil
}

// ListJobExecutionsForJob lists a job's executions in target order,
// optionally only those with the given status.
func (s *Service) ListJobExecutionsForJob(jobID, status string) ([]Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[jobID]; !ok {
		return nil, errf(ErrNotFound, "Job %s does not exist", jobID)
	}
	var out []Execution
	for _, t := range s.byJob[jobID] {
		if e := s.things[t][jobID]; status == "" || e.Status == status {
			out = append(out, e.clone())
		}
	}
	return out, nil
}

// ListJobExecutionsForThing lists a thing's executions in job creation
// order, optionally only those with the given status or job.
func (s *Service) ListJobExecutionsForThing(thing, status, jobID string) []Execution {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Execution
	for _, e := range s.things[thing] {
		if (status == "" || e.Status == status) && (jobID == "" || e.JobID == jobID) {
			out = append(out, e.clone())
		}
	}
	slices.SortFunc(out, func(a, b Execution) int { return int(a.Seq - b.Seq) })
	return out
}

// ThingARN is the ARN the service gives a thing in its answers.
func (s *Service) ThingARN(thing string) string { return s.thingARN(thing) }

var _ Files = (*s3.Store)(nil)
