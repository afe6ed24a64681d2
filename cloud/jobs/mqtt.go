package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/iotagent/iotagent/cloud/broker"
)

// Filter is the broker filter HandleRequest serves.
const Filter = "$aws/things/+/jobs/#"

// Error codes of spec/jobs.md §6.
const (
	CodeInvalidTopic           = "InvalidTopic"
	CodeInvalidJSON            = "InvalidJson"
	CodeInvalidRequest         = "InvalidRequest"
	CodeInvalidStateTransition = "InvalidStateTransition"
	CodeResourceNotFound       = "ResourceNotFound"
	CodeVersionMismatch        = "VersionMismatch"
	CodeInternalError          = "InternalError"
	CodeRequestThrottled       = "RequestThrottled"
	CodeTerminalStateReached   = "TerminalStateReached"
)

// MQTT API names (for Options.Fault).
const (
	OpGetPending   = "GetPendingJobExecutions"
	OpStartNext    = "StartNextPendingJobExecution"
	OpDescribe     = "DescribeJobExecution"
	OpUpdate       = "UpdateJobExecution"
	nextJobID      = "$next"
	thingsPrefix   = "$aws/things/"
	jobsSeparator  = "/jobs/"
	maxThingName   = 128
	maxStepTimeout = MaxTimeoutMinutes
)

func topicPrefix(thing string) string { return thingsPrefix + thing + jobsSeparator }

// Route is a parsed jobs request topic.
type Route struct {
	Thing string
	Op    string // one of the Op constants; "" for a topic that matches no API
	JobID string // for OpDescribe ("$next" allowed) and OpUpdate
	// Ignore is set for topics the service publishes on (accepted,
	// rejected, notify, notify-next): a device publishing there gets no
	// answer.
	Ignore bool
}

// ParseTopic parses a topic under $aws/things/THING/jobs/. ok is false
// for a topic outside it.
func ParseTopic(topic string) (r Route, ok bool) {
	rest, ok := strings.CutPrefix(topic, thingsPrefix)
	if !ok {
		return r, false
	}
	thing, api, ok := strings.Cut(rest, jobsSeparator)
	if !ok || thing == "" || strings.Contains(thing, "/") {
		return r, false
	}
	r.Thing = thing
	parts := strings.Split(api, "/")
	last := parts[len(parts)-1]
	switch {
	case api == "notify" || api == "notify-next" || (len(parts) > 1 && (last == "accepted" || last == "rejected")):
		r.Ignore = true
	case api == "get":
		r.Op = OpGetPending
	case api == "start-next":
		r.Op = OpStartNext
	case len(parts) == 2 && parts[1] == "get" && (parts[0] == nextJobID || ValidJobID(parts[0])):
		r.Op, r.JobID = OpDescribe, parts[0]
	case len(parts) == 2 && parts[1] == "update" && ValidJobID(parts[0]):
		r.Op, r.JobID = OpUpdate, parts[0]
	}
	if !validThingName(thing) {
		r.Op = ""
	}
	return r, true
}

func validThingName(s string) bool {
	if s == "" || len(s) > maxThingName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == ':' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Request is a parsed MQTT request payload: every field any API takes.
type Request struct {
	ClientToken              *string
	Status                   string
	StatusDetails            map[string]string
	HasStatusDetails         bool
	ExpectedVersion          *int64
	ExecutionNumber          *int64
	IncludeJobExecutionState bool
	IncludeJobDocument       *bool
	StepTimeoutInMinutes     *int64
}

// RequestError is a rejection: its Code is one of the Code constants.
type RequestError struct {
	Code, Message string
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

func badRequest(format string, args ...any) *RequestError {
	return &RequestError{Code: CodeInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

// ParseRequest parses a request payload for op. An empty payload is {}.
// Unknown fields are ignored. The returned Request carries the clientToken
// even when err is set, if it could be read.
func ParseRequest(op string, payload []byte) (Request, *RequestError) {
	var req Request
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = []byte("{}")
	}
	if !utf8.Valid(payload) {
		return req, &RequestError{Code: CodeInvalidJSON, Message: "The payload is not valid UTF-8 JSON"}
	}
	var fields map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if err := d.Decode(&fields); err != nil || d.More() {
		var v any
		if json.Unmarshal(payload, &v) == nil {
			return req, badRequest("The request must be a JSON object")
		}
		return req, &RequestError{Code: CodeInvalidJSON, Message: "The payload is not valid JSON"}
	}
	null := func(raw json.RawMessage) bool { return raw == nil || string(raw) == "null" }
	if raw := fields["clientToken"]; !null(raw) {
		var tok string
		if json.Unmarshal(raw, &tok) != nil || len(tok) > MaxClientToken || tok == "" {
			return req, badRequest("clientToken must be a string of 1-%d characters", MaxClientToken)
		}
		req.ClientToken = &tok
	}
	boolField := func(name string) (*bool, *RequestError) {
		raw := fields[name]
		if null(raw) {
			return nil, nil
		}
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return nil, badRequest("%s must be a boolean", name)
		}
		return &b, nil
	}
	intField := func(name string, stringOK bool) (*int64, *RequestError) {
		raw := fields[name]
		if null(raw) {
			return nil, nil
		}
		s := string(raw)
		if stringOK && len(raw) > 0 && raw[0] == '"' {
			if json.Unmarshal(raw, &s) != nil {
				return nil, badRequest("%s must be an integer", name)
			}
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, badRequest("%s must be an integer", name)
		}
		return &n, nil
	}
	var rerr *RequestError
	switch op {
	case OpDescribe:
		if req.ExecutionNumber, rerr = intField("executionNumber", false); rerr != nil {
			return req, rerr
		}
		if req.IncludeJobDocument, rerr = boolField("includeJobDocument"); rerr != nil {
			return req, rerr
		}
	case OpStartNext, OpUpdate:
		if raw := fields["statusDetails"]; !null(raw) {
			if rerr = parseStatusDetails(raw, &req); rerr != nil {
				return req, rerr
			}
		}
		if req.StepTimeoutInMinutes, rerr = intField("stepTimeoutInMinutes", false); rerr != nil {
			return req, rerr
		}
		if n := req.StepTimeoutInMinutes; n != nil && *n != -1 && (*n < 1 || *n > maxStepTimeout) {
			return req, badRequest("stepTimeoutInMinutes must be -1 or 1-%d", maxStepTimeout)
		}
		if op == OpStartNext {
			break
		}
		raw := fields["status"]
		if null(raw) || json.Unmarshal(raw, &req.Status) != nil {
			return req, badRequest("status is required and must be a string")
		}
		switch req.Status {
		case StatusInProgress, StatusSucceeded, StatusFailed, StatusRejected:
		default:
			return req, badRequest("status %q is not one a device may set (IN_PROGRESS, SUCCEEDED, FAILED, REJECTED)", truncate(req.Status, 40))
		}
		if req.ExpectedVersion, rerr = intField("expectedVersion", true); rerr != nil {
			return req, rerr
		}
		if req.ExecutionNumber, rerr = intField("executionNumber", false); rerr != nil {
			return req, rerr
		}
		var b *bool
		if b, rerr = boolField("includeJobExecutionState"); rerr != nil {
			return req, rerr
		}
		req.IncludeJobExecutionState = b != nil && *b
		if req.IncludeJobDocument, rerr = boolField("includeJobDocument"); rerr != nil {
			return req, rerr
		}
	}
	return req, nil
}

func parseStatusDetails(raw json.RawMessage, req *Request) *RequestError {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return badRequest("statusDetails must be an object of strings")
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return badRequest("statusDetails.%s must be a string", truncate(k, 40))
		}
		if !validDetailKey(k) {
			return badRequest("statusDetails key %q must be 1-%d of [a-zA-Z0-9:_-]", truncate(k, 40), MaxStatusDetailKey)
		}
		if msg := checkDetailValue(s); msg != "" {
			return badRequest("statusDetails.%s %s", truncate(k, 40), msg)
		}
		out[k] = s
	}
	req.StatusDetails, req.HasStatusDetails = out, true
	return nil
}

// checkDetailValue says what is wrong with a statusDetails value, or "".
// AWS's model gives the pattern [^\p{C}]+, but AWS stores command output
// with newlines (the AWS IoT Device Client reports stdout and stderr so,
// and treats a rejection as final): tab, newline and carriage return are
// accepted, other control and format characters are not. The length is
// AWS's: 1-1024 characters.
func checkDetailValue(v string) string {
	if n := utf8.RuneCountInString(v); n < 1 || n > MaxStatusDetailValue {
		return fmt.Sprintf("must be 1-%d characters, not %d", MaxStatusDetailValue, n)
	}
	if i := strings.IndexFunc(v, func(r rune) bool {
		return r != '\t' && r != '\n' && r != '\r' && unicode.Is(unicode.C, r)
	}); i >= 0 {
		r, _ := utf8.DecodeRuneInString(v[i:])
		return fmt.Sprintf("has the control character %U at byte %d (only tab, newline and carriage return are allowed)", r, i)
	}
	return ""
}

func validDetailKey(k string) bool {
	return validThingName(k) && len(k) <= MaxStatusDetailKey
}

// Wire shapes.

type execSummary struct {
	JobID           string `json:"jobId"`
	QueuedAt        int64  `json:"queuedAt"`
	StartedAt       int64  `json:"startedAt,omitempty"`
	LastUpdatedAt   int64  `json:"lastUpdatedAt"`
	VersionNumber   int64  `json:"versionNumber"`
	ExecutionNumber int64  `json:"executionNumber"`
}

type execWire struct {
	JobID                            string            `json:"jobId"`
	ThingName                        string            `json:"thingName"`
	JobDocument                      json.RawMessage   `json:"jobDocument,omitempty"`
	Status                           string            `json:"status"`
	StatusDetails                    map[string]string `json:"statusDetails,omitempty"`
	QueuedAt                         int64             `json:"queuedAt"`
	StartedAt                        int64             `json:"startedAt,omitempty"`
	LastUpdatedAt                    int64             `json:"lastUpdatedAt"`
	VersionNumber                    int64             `json:"versionNumber"`
	ExecutionNumber                  int64             `json:"executionNumber"`
	ApproximateSecondsBeforeTimedOut int64             `json:"approximateSecondsBeforeTimedOut,omitempty"`
}

type execState struct {
	Status        string            `json:"status"`
	StatusDetails map[string]string `json:"statusDetails"`
	VersionNumber int64             `json:"versionNumber"`
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func summary(e *Execution) execSummary {
	return execSummary{e.JobID, unix(e.QueuedAt), unix(e.StartedAt), unix(e.LastUpdatedAt), e.VersionNumber, e.ExecutionNumber}
}

func state(e *Execution) *execState {
	d := e.StatusDetails
	if d == nil {
		d = map[string]string{}
	}
	return &execState{e.Status, d, e.VersionNumber}
}

// wire renders e for a device, with its document if withDoc.
func (s *Service) wire(e *Execution, withDoc bool, now time.Time) (*execWire, error) {
	w := &execWire{JobID: e.JobID, ThingName: e.ThingName, Status: e.Status, StatusDetails: e.StatusDetails,
		QueuedAt: unix(e.QueuedAt), StartedAt: unix(e.StartedAt), LastUpdatedAt: unix(e.LastUpdatedAt),
		VersionNumber: e.VersionNumber, ExecutionNumber: e.ExecutionNumber,
		ApproximateSecondsBeforeTimedOut: e.SecondsBeforeTimedOut(now)}
	if withDoc {
		doc, err := s.deviceDocument(s.jobs[e.JobID])
		if err != nil {
			return nil, err
		}
		w.JobDocument = doc
	}
	return w, nil
}

// mustJSON encodes one of the fixed wire shapes. Only a stored document
// that is not JSON could fail it; the answer is then an InternalError.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"code":"InternalError","message":"Internal service failure"}`)
	}
	return b
}

func (s *Service) notifyPayload(thing string, now time.Time) []byte {
	groups := map[string][]execSummary{}
	n := 0
	for _, e := range s.pendingExecutions(thing) {
		if n == maxNotifyExecutions {
			break
		}
		groups[e.Status] = append(groups[e.Status], summary(e))
		n++
	}
	return mustJSON(struct {
		Timestamp int64                    `json:"timestamp"`
		Jobs      map[string][]execSummary `json:"jobs"`
	}{now.Unix(), groups})
}

func (s *Service) notifyNextPayload(head *Execution, now time.Time) []byte {
	var w *execWire
	if head != nil {
		var err error
		if w, err = s.wire(head, true, now); err != nil {
			s.log.Warn("notify-next document", "job", head.JobID, "err", err)
			w, _ = s.wire(head, false, now)
		}
	}
	return mustJSON(struct {
		Timestamp int64     `json:"timestamp"`
		Execution *execWire `json:"execution,omitempty"`
	}{now.Unix(), w})
}

// HandleRequest is the broker handler for Filter: it answers one device
// request to the requesting client.
func (s *Service) HandleRequest(p *broker.Principal, topic string, payload []byte) {
	if p == nil {
		return
	}
	r, ok := ParseTopic(topic)
	if !ok || r.Ignore {
		return
	}
	s.mu.Lock()
	msgs := s.handleLocked(p.ClientID, topic, r, payload)
	s.sendUnlock(msgs)
}

// handleLocked serves one request with s.mu held and returns the messages
// to send.
func (s *Service) handleLocked(clientID, topic string, r Route, payload []byte) []message {
	now := s.o.Now()
	reply := func(suffix string, v any) message {
		return message{clientID: clientID, topic: topic + suffix, payload: mustJSON(v)}
	}
	var req Request
	reject := func(code, msg string, e *Execution) []message {
		body := struct {
			Code           string     `json:"code"`
			Message        string     `json:"message"`
			ClientToken    *string    `json:"clientToken,omitempty"`
			Timestamp      int64      `json:"timestamp"`
			ExecutionState *execState `json:"executionState,omitempty"`
		}{Code: code, Message: msg, ClientToken: req.ClientToken, Timestamp: now.Unix()}
		if e != nil {
			body.ExecutionState = state(e)
		}
		return []message{reply("/rejected", body)}
	}
	if r.Op == "" {
		return reject(CodeInvalidTopic, "Request topic "+truncate(topic, 200)+" matches no Jobs API", nil)
	}
	req, rerr := ParseRequest(r.Op, payload)
	if rerr != nil {
		return reject(rerr.Code, rerr.Message, nil)
	}
	if s.o.Fault != nil {
		if code := s.o.Fault(r.Thing, r.Op); code != "" {
			return reject(code, "Injected fault", nil)
		}
	}
	internal := func(err error) []message {
		s.log.Warn("jobs request", "thing", r.Thing, "op", r.Op, "err", err)
		return reject(CodeInternalError, "Internal service failure", nil)
	}
	switch r.Op {
	case OpGetPending:
		out := struct {
			InProgress  []execSummary `json:"inProgressJobs"`
			Queued      []execSummary `json:"queuedJobs"`
			Timestamp   int64         `json:"timestamp"`
			ClientToken *string       `json:"clientToken,omitempty"`
		}{[]execSummary{}, []execSummary{}, now.Unix(), req.ClientToken}
		for _, e := range s.pendingExecutions(r.Thing) {
			if e.Status == StatusInProgress {
				out.InProgress = append(out.InProgress, summary(e))
			} else {
				out.Queued = append(out.Queued, summary(e))
			}
		}
		return []message{reply("/accepted", out)}

	case OpDescribe:
		var e *Execution
		if r.JobID == nextJobID {
			if ps := s.pendingExecutions(r.Thing); len(ps) > 0 {
				e = ps[0]
			}
		} else {
			e = s.things[r.Thing][r.JobID]
			if e == nil || (req.ExecutionNumber != nil && *req.ExecutionNumber != e.ExecutionNumber) {
				return reject(CodeResourceNotFound, "Job execution "+r.JobID+" does not exist for thing "+r.Thing, nil)
			}
			if terminal(e.Status) {
				return reject(CodeTerminalStateReached, "Job execution "+r.JobID+" is in the terminal state "+e.Status, nil)
			}
		}
		out := struct {
			Execution   *execWire `json:"execution,omitempty"`
			Timestamp   int64     `json:"timestamp"`
			ClientToken *string   `json:"clientToken,omitempty"`
		}{Timestamp: now.Unix(), ClientToken: req.ClientToken}
		if e != nil {
			w, err := s.wire(e, req.IncludeJobDocument == nil || *req.IncludeJobDocument, now)
			if err != nil {
				return internal(err)
			}
			out.Execution = w
		}
		return []message{reply("/accepted", out)}

	case OpStartNext:
		out := struct {
			Execution   *execWire `json:"execution,omitempty"`
			Timestamp   int64     `json:"timestamp"`
			ClientToken *string   `json:"clientToken,omitempty"`
		}{Timestamp: now.Unix(), ClientToken: req.ClientToken}
		ps := s.pendingExecutions(r.Thing)
		if len(ps) == 0 {
			return []message{reply("/accepted", out)}
		}
		e := ps[0]
		if e.Status != StatusQueued {
			w, err := s.wire(e, true, now)
			if err != nil {
				return internal(err)
			}
			out.Execution = w
			return []message{reply("/accepted", out)}
		}
		// The answer is made before the execution starts: an execution
		// whose document cannot be rendered stays QUEUED, and the device
		// hears why (an InternalError it may retry), never nothing.
		before := s.pendingState(r.Thing)
		saved := e.clone()
		s.start(e, now)
		if req.HasStatusDetails {
			e.StatusDetails = req.StatusDetails
		}
		s.setStepTimer(e, req.StepTimeoutInMinutes, now)
		w, err := s.wire(e, true, now)
		if err == nil {
			err = s.saveExecution(e)
		}
		if err != nil {
			*e = saved
			return internal(err)
		}
		s.retime(e)
		out.Execution = w
		return append([]message{reply("/accepted", out)}, s.notifications(r.Thing, before, now)...)

	case OpUpdate:
		e := s.things[r.Thing][r.JobID]
		if e == nil || (req.ExecutionNumber != nil && *req.ExecutionNumber != e.ExecutionNumber) {
			return reject(CodeResourceNotFound, "Job execution "+r.JobID+" does not exist for thing "+r.Thing, nil)
		}
		if terminal(e.Status) {
			return reject(CodeInvalidStateTransition, "Job execution "+r.JobID+" is "+e.Status+" and cannot be updated", e)
		}
		if req.ExpectedVersion != nil && *req.ExpectedVersion != e.VersionNumber {
			return reject(CodeVersionMismatch, "The expected version does not match the execution's version", e)
		}
		// The document, if asked for, is rendered first: an update is
		// either applied and answered, or neither.
		var doc json.RawMessage
		if req.IncludeJobDocument != nil && *req.IncludeJobDocument {
			var err error
			if doc, err = s.deviceDocument(s.jobs[e.JobID]); err != nil {
				return internal(err)
			}
		}
		before := s.pendingState(r.Thing)
		saved := e.clone()
		if e.Status == StatusQueued && req.Status == StatusInProgress {
			s.start(e, now)
		} else {
			e.Status = req.Status
			e.VersionNumber++
			e.LastUpdatedAt = now
		}
		if req.HasStatusDetails {
			e.StatusDetails = req.StatusDetails
		}
		if terminal(e.Status) {
			e.StepDeadline, e.InProgressDeadline = time.Time{}, time.Time{}
		} else {
			s.setStepTimer(e, req.StepTimeoutInMinutes, now)
		}
		if err := s.saveExecution(e); err != nil {
			*e = saved
			return internal(err)
		}
		s.retime(e)
		if terminal(e.Status) {
			s.completeIfDone(e.JobID, now)
		}
		out := struct {
			ExecutionState *execState      `json:"executionState,omitempty"`
			JobDocument    json.RawMessage `json:"jobDocument,omitempty"`
			Timestamp      int64           `json:"timestamp"`
			ClientToken    *string         `json:"clientToken,omitempty"`
		}{Timestamp: now.Unix(), ClientToken: req.ClientToken}
		if req.IncludeJobExecutionState {
			out.ExecutionState = state(e)
		}
		out.JobDocument = doc
		return append([]message{reply("/accepted", out)}, s.notifications(r.Thing, before, now)...)
	}
	return nil
}

// start moves a QUEUED execution to IN_PROGRESS and starts the job's
// in-progress timer.
func (s *Service) start(e *Execution, now time.Time) {
	e.Status, e.StartedAt, e.LastUpdatedAt = StatusInProgress, now, now
	e.VersionNumber++
	if j := s.jobs[e.JobID]; j != nil && j.TimeoutConfig != nil && j.TimeoutConfig.InProgressTimeoutInMinutes > 0 {
		e.InProgressDeadline = now.Add(time.Duration(j.TimeoutConfig.InProgressTimeoutInMinutes) * time.Minute)
	}
}

// setStepTimer applies stepTimeoutInMinutes: nil keeps the timer, -1
// discards it, n starts (or replaces) it, never past the in-progress timer.
func (s *Service) setStepTimer(e *Execution, minutes *int64, now time.Time) {
	switch {
	case minutes == nil:
	case *minutes == -1:
		e.StepDeadline = time.Time{}
	default:
		d := now.Add(time.Duration(*minutes) * time.Minute)
		if !e.InProgressDeadline.IsZero() && d.After(e.InProgressDeadline) {
			d = e.InProgressDeadline
		}
		e.StepDeadline = d
	}
}
