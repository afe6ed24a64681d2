package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Transport is the MQTT connection (agent/transport.Client satisfies it).
// Subscribe handlers must not block.
type Transport interface {
	Publish(ctx context.Context, topic string, qos byte, payload []byte) error
	Subscribe(filter string, qos byte, h func(topic string, payload []byte)) error
}

// Job is one job execution handed to a handler.
type Job struct {
	ID              string
	ExecutionNumber int64
	Operation       string
	Document        json.RawMessage // the whole job document
	// Resumed is set when the agent restarted while this job ran; Marker
	// is what the handler last recorded with Progress.Mark.
	Resumed bool
	Marker  string
}

// Handler runs one kind of job. It returns the statusDetails to report
// with SUCCEEDED, or an error: FAILED with the error text as the reason,
// REJECTED when the error wraps ErrReject, and no final status at all
// when it wraps ErrKeepInProgress (the agent is about to restart and the
// job finishes after it). ctx ends when the job is canceled or removed,
// when its step times out, or when the agent stops.
type Handler interface {
	Run(ctx context.Context, job Job, p *Progress) (map[string]string, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job Job, p *Progress) (map[string]string, error)

// Run calls f.
func (f HandlerFunc) Run(ctx context.Context, job Job, p *Progress) (map[string]string, error) {
	return f(ctx, job, p)
}

// Errors handlers return or see.
var (
	// ErrReject: the job cannot be run as written (REJECTED).
	ErrReject = errors.New("rejected")
	// ErrKeepInProgress: leave the job IN_PROGRESS; the agent restarts
	// and the handler finishes it when resumed.
	ErrKeepInProgress = errors.New("job continues after a restart")
	// ErrCanceled is the cause of a handler's ctx when the service
	// canceled or removed the job.
	ErrCanceled = errors.New("job canceled or removed")
	// ErrStepTimeout is the cause when no progress came within the step
	// timeout.
	ErrStepTimeout = errors.New("step timed out")
	// ErrTimeout: no answer from the Jobs service in time.
	ErrTimeout = errors.New("jobs: no answer from the service")
)

// RejectedError is a request the Jobs service rejected.
type RejectedError struct {
	Code, Message string
	State         *executionState
}

func (e *RejectedError) Error() string { return "jobs: rejected: " + e.Code + ": " + e.Message }

// terminalRejection reports whether the service said the execution is no
// longer running (canceled, removed, timed out or gone).
func terminalRejection(err error) bool {
	var re *RejectedError
	return errors.As(err, &re) && (re.Code == "InvalidStateTransition" || re.Code == "ResourceNotFound" || re.Code == "TerminalStateReached")
}

// Options configure a Runner. Zero values take the documented defaults.
type Options struct {
	Thing     string
	Transport Transport
	StateDir  string // the in-flight job lives in STATE/jobs
	Handlers  map[string]Handler
	// StepTimeout is sent as stepTimeoutInMinutes with every update and
	// enforced here: a handler that reports no progress for this long is
	// cancelled and the job FAILED. Whole minutes, default 10 min.
	StepTimeout time.Duration
	// RequestTimeout bounds the wait for an accepted/rejected answer;
	// default 15 s.
	RequestTimeout time.Duration
	// RetryMin and RetryAfter bound the wait after a failed cycle (a
	// start-next or update throttled, refused or unanswered): the first
	// retry comes after RetryMin (default 1 s), each further one after
	// twice the last, up to RetryAfter (default 30 s), each wait a random
	// half to all of that so that a fleet throttled together does not
	// retry together. Kick (on every reconnect, on notify-next) tries at
	// once.
	RetryMin, RetryAfter time.Duration
	Clock                clockwork.Clock // default the real clock
	Logger               *slog.Logger    // default discard
}

// Runner runs jobs one at a time.
type Runner struct {
	o     Options
	st    store
	kick  chan struct{}
	mu    sync.Mutex
	reqs  map[string]chan *response
	run   string // the job running now
	stop  context.CancelCauseFunc
	head  string // the last notify-next's job ID
	idle  bool
	prefx string
}

// New checks o and returns a Runner; it starts nothing.
func New(o Options) (*Runner, error) {
	if o.Thing == "" || o.Transport == nil || o.StateDir == "" {
		return nil, errors.New("jobs: Thing, Transport and StateDir are required")
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 10 * time.Minute
	}
	if o.StepTimeout < time.Minute {
		o.StepTimeout = time.Minute
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 15 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 30 * time.Second
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	o.RetryMin = min(o.RetryMin, o.RetryAfter)
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	st := newStore(o.StateDir)
	// A damaged in-flight record is recovered now, at start, rather than
	// when the next job comes (process reports a permission error then).
	_, _ = st.load()
	recoverLast(o.StateDir)
	return &Runner{o: o, st: st, kick: make(chan struct{}, 1),
		reqs: map[string]chan *response{}, prefx: "$aws/things/" + o.Thing + "/jobs/"}, nil
}

// Kick asks for the next job now; call it after every (re)connect.
func (r *Runner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run subscribes and runs jobs until ctx ends. It returns after the
// handler it started has returned.
func (r *Runner) Run(ctx context.Context) error {
	for _, f := range []string{"notify-next", "start-next/accepted", "start-next/rejected", "+/update/accepted", "+/update/rejected"} {
		h := r.onResponse
		if f == "notify-next" {
			h = r.onNotify
		}
		if err := r.o.Transport.Subscribe(r.prefx+f, 1, h); err != nil {
			return fmt.Errorf("jobs: subscribe: %w", err)
		}
	}
	r.Kick()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		}
		err := r.cycle(ctx)
		switch {
		case err == nil:
			failures = 0
		case errors.Is(err, ErrKeepInProgress):
			<-ctx.Done() // the agent is restarting: run nothing more
			return nil
		case ctx.Err() != nil:
			return nil
		default:
			wait := r.retryWait(failures)
			failures++
			r.o.Logger.Warn("jobs: will retry", "err", err, "after", wait.Round(time.Millisecond))
			r.o.Clock.AfterFunc(wait, r.Kick)
		}
	}
}

// retryWait is the wait before the retry after failures failed cycles in
// a row: RetryMin doubled per failure up to RetryAfter, then a random half
// to all of it.
func (r *Runner) retryWait(failures int) time.Duration {
	d := r.o.RetryAfter
	if failures < 30 {
		d = min(r.o.RetryMin<<failures, r.o.RetryAfter)
	}
	return d/2 + mrand.N(d/2+1)
}

// cycle runs jobs until none is pending.
func (r *Runner) cycle(ctx context.Context) error {
	for {
		resp, err := r.request(ctx, "start-next", startNextRequest{StepTimeoutInMinutes: r.stepMinutes()})
		if err != nil {
			return fmt.Errorf("jobs: start-next: %w", err)
		}
		if resp.Execution == nil {
			r.mu.Lock()
			r.idle = true
			r.mu.Unlock()
			return nil
		}
		if err := r.process(ctx, resp.Execution); err != nil {
			return err
		}
	}
}

func (r *Runner) stepMinutes() int64 { return int64(r.o.StepTimeout / time.Minute) }

func token() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// request publishes a request and waits for its answer.
func (r *Runner) request(ctx context.Context, op string, body any) (*response, error) {
	tok := token()
	switch b := body.(type) {
	case startNextRequest:
		b.ClientToken = tok
		body = b
	case updateRequest:
		b.ClientToken = tok
		body = b
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	ch := make(chan *response, 1)
	r.mu.Lock()
	r.reqs[tok] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.reqs, tok)
		r.mu.Unlock()
	}()
	if err := r.o.Transport.Publish(ctx, r.prefx+op, 1, payload); err != nil {
		return nil, err
	}
	t := r.o.Clock.NewTimer(r.o.RequestTimeout)
	defer t.Stop()
	select {
	case resp := <-ch:
		if resp.rejected {
			return nil, &RejectedError{Code: resp.Code, Message: resp.Message, State: resp.ExecutionState}
		}
		return resp, nil
	case <-t.Chan():
		return nil, ErrTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *Runner) onResponse(topic string, payload []byte) {
	var resp response
	if err := json.Unmarshal(payload, &resp); err != nil || resp.ClientToken == "" {
		return
	}
	resp.rejected = strings.HasSuffix(topic, "/rejected")
	resp.topic = topic
	r.mu.Lock()
	ch := r.reqs[resp.ClientToken]
	r.mu.Unlock()
	if ch != nil {
		select {
		case ch <- &resp:
		default:
		}
	}
}

// onNotify: a new head. When idle, look for work; when running a job that
// is no longer the head, the service canceled or removed it.
func (r *Runner) onNotify(_ string, payload []byte) {
	var n response
	if err := json.Unmarshal(payload, &n); err != nil {
		return
	}
	head := ""
	if n.Execution != nil {
		head = n.Execution.JobID
	}
	r.mu.Lock()
	r.head = head
	running, stop := r.run, r.stop
	r.mu.Unlock()
	if running != "" && head != running && stop != nil {
		stop(ErrCanceled)
		return
	}
	if head != "" {
		r.Kick()
	}
}

// parseOperation reads the "operation" of a job document.
func parseOperation(doc []byte) (string, error) {
	if len(doc) == 0 {
		return "", errors.New("empty job document")
	}
	if len(doc) > 32<<10 {
		return "", fmt.Errorf("job document is %d bytes, more than 32 KB", len(doc))
	}
	var d struct {
		Operation *string `json:"operation"`
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	if err := dec.Decode(&d); err != nil {
		return "", fmt.Errorf("job document is not a JSON object: %v", err)
	}
	if d.Operation == nil || *d.Operation == "" {
		return "", errors.New(`job document has no "operation"`)
	}
	return *d.Operation, nil
}

// process runs one execution to its end (or to a restart).
func (r *Runner) process(ctx context.Context, e *execution) error {
	inf, err := r.st.load()
	if err != nil {
		r.o.Logger.Warn("jobs: in-flight record unreadable; starting afresh", "err", err)
		inf = nil
	}
	resumed := inf != nil && inf.JobID == e.JobID && inf.ExecutionNumber == e.ExecutionNumber
	if inf != nil && !resumed {
		if err := r.st.clear(); err != nil {
			return err
		}
	}
	p := &Progress{r: r, jobID: e.JobID, execNo: e.ExecutionNumber, version: e.VersionNumber}
	job := Job{ID: e.JobID, ExecutionNumber: e.ExecutionNumber, Document: e.JobDocument}
	op, perr := parseOperation(e.JobDocument)
	p.op = op
	if perr != nil {
		return p.finish(ctx, StatusRejected, map[string]string{"reason": perr.Error()})
	}
	job.Operation = op
	h := r.o.Handlers[op]
	if h == nil {
		return p.finish(ctx, StatusRejected, map[string]string{"reason": fmt.Sprintf("unknown operation %q", op)})
	}
	if resumed && inf.Final != nil {
		p.inf = inf
		return p.finish(ctx, inf.Final.Status, inf.Final.Details)
	}
	if resumed {
		job.Resumed, job.Marker = true, inf.Marker
	} else {
		inf = &inflight{JobID: e.JobID, ExecutionNumber: e.ExecutionNumber, Operation: op}
		if err := r.st.save(inf); err != nil {
			return err
		}
	}
	p.inf = inf
	step := "started"
	if resumed {
		step = "resumed"
	}
	if err := p.Update(ctx, map[string]string{"operation": op, "step": step}); err != nil {
		if terminalRejection(err) {
			return r.st.clear()
		}
		return err
	}
	hctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r.mu.Lock()
	r.run, r.stop, r.idle = e.JobID, stop, false
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.run, r.stop = "", nil
		r.mu.Unlock()
	}()
	// The step watchdog: no progress for StepTimeout cancels the handler.
	p.timer = r.o.Clock.NewTimer(r.o.StepTimeout)
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-p.timer.Chan():
			stop(ErrStepTimeout)
		case <-hctx.Done():
		}
	})
	details, herr := h.Run(hctx, job, p)
	cause := context.Cause(hctx)
	stop(nil)
	wg.Wait()
	p.timer.Stop()
	switch {
	case errors.Is(herr, ErrKeepInProgress):
		return ErrKeepInProgress
	case errors.Is(cause, ErrCanceled):
		r.o.Logger.Info("jobs: job canceled or removed", "job", e.JobID)
		return r.st.clear()
	case ctx.Err() != nil:
		return ctx.Err() // the agent stops; the job resumes after the restart
	case errors.Is(cause, ErrStepTimeout):
		return p.finish(ctx, StatusFailed, withReason(details, fmt.Sprintf("step timed out: no progress for %s", r.o.StepTimeout)))
	case errors.Is(herr, ErrReject):
		return p.finish(ctx, StatusRejected, withReason(details, herr.Error()))
	case herr != nil:
		return p.finish(ctx, StatusFailed, withReason(details, herr.Error()))
	}
	return p.finish(ctx, StatusSucceeded, details)
}

func withReason(d map[string]string, reason string) map[string]string {
	out := map[string]string{"reason": reason}
	for k, v := range d {
		if k != "reason" {
			out[k] = v
		}
	}
	return out
}

// Progress reports a running job's progress.
type Progress struct {
	r       *Runner
	jobID   string
	execNo  int64
	op      string // the document's operation ("" when it has none)
	version int64
	inf     *inflight
	timer   clockwork.Timer
	mu      sync.Mutex
}

// Update reports IN_PROGRESS with details and restarts the step timer,
// here and in the service. It returns an error only when the job must
// stop: the service says the execution is over (canceled, removed, in a
// terminal state) or ctx ended. A report that does not get through (the
// connection dropped before the PUBACK, no answer, RequestThrottled) is
// logged and the job goes on: progress reports are best effort, and the
// final status is durable and retried until the service has it. (A lost
// report used to end the job FAILED with the transport's error.)
func (p *Progress) Update(ctx context.Context, details map[string]string) error {
	p.mu.Lock()
	if p.timer != nil {
		p.timer.Reset(p.r.o.StepTimeout)
	}
	p.mu.Unlock()
	err := p.send(ctx, StatusInProgress, details)
	if err == nil || terminalRejection(err) || ctx.Err() != nil {
		return err
	}
	p.r.o.Logger.Warn("jobs: progress report not delivered; the job goes on", "job", p.jobID, "step", details["step"], "err", err)
	return nil
}

// Mark records a marker for this job in the in-flight record, durably,
// before the handler does something that a restart interrupts.
func (p *Progress) Mark(marker string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inf == nil {
		return errors.New("jobs: no in-flight job")
	}
	p.inf.Marker = marker
	return p.r.st.save(p.inf)
}

// send updates the execution, following one VersionMismatch.
func (p *Progress) send(ctx context.Context, status string, details map[string]string) error {
	for attempt := 0; ; attempt++ {
		p.mu.Lock()
		req := updateRequest{Status: status, StatusDetails: cleanDetails(details), ExpectedVersion: p.version,
			IncludeJobExecutionState: true}
		if status == StatusInProgress {
			req.StepTimeoutInMinutes = p.r.stepMinutes()
		}
		p.mu.Unlock()
		resp, err := p.r.request(ctx, p.jobID+"/update", req)
		var re *RejectedError
		if errors.As(err, &re) && re.Code == "VersionMismatch" && re.State != nil && attempt == 0 {
			p.mu.Lock()
			p.version = re.State.VersionNumber
			p.mu.Unlock()
			continue
		}
		if err != nil {
			return fmt.Errorf("jobs: update %s %s: %w", p.jobID, status, err)
		}
		if resp.ExecutionState != nil {
			p.mu.Lock()
			p.version = resp.ExecutionState.VersionNumber
			p.mu.Unlock()
		}
		return nil
	}
}

// finish sends the final status; the in-flight record goes once the
// service has it (or says the job is over anyway).
func (p *Progress) finish(ctx context.Context, status string, details map[string]string) error {
	if p.inf != nil && p.inf.Final == nil {
		p.inf.Final = &final{Status: status, Details: details}
		if err := p.r.st.save(p.inf); err != nil {
			return err
		}
	}
	// Recorded once decided, for iotagent jobs list: the in-flight
	// record says whether the service has it yet.
	last := LastJob{JobID: p.jobID, ExecutionNumber: p.execNo, Operation: p.op, Status: status, Details: details, EndedAt: p.r.o.Clock.Now().UTC()}
	if err := p.r.saveLast(last); err != nil {
		p.r.o.Logger.Warn("jobs: cannot record the last job for iotagent jobs list", "err", err)
	}
	err := p.send(ctx, status, details)
	if err != nil && !terminalRejection(err) {
		return err
	}
	if !terminalRejection(err) {
		p.r.o.Logger.Info("jobs: job done", "job", p.jobID, "status", status, "reason", details["reason"])
	}
	return p.r.st.clear()
}
