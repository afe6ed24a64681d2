package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/iotagent/iotagent/cloud/jobs"
)

// Jobs is the Jobs service behind the jobs control plane; *jobs.Service
// satisfies it.
type Jobs interface {
	CreateJob(in jobs.CreateJobInput) (jobs.Job, error)
	DescribeJob(jobID string) (jobs.Job, error)
	GetJobDocument(jobID string) (string, error)
	CancelJob(jobID string, force bool, reasonCode, comment string) (jobs.Job, error)
	ListJobs(status string) []jobs.Job
	DescribeJobExecution(thing, jobID string, executionNumber int64) (jobs.Execution, error)
	ListJobExecutionsForJob(jobID, status string) ([]jobs.Execution, error)
	ListJobExecutionsForThing(thing, status, jobID string) []jobs.Execution
	ThingARN(thing string) string
}

func init() {
	routes = append(routes,
		newRoute(svcControl, http.MethodPut, "/jobs/{jobId}", "CreateJob", (*Server).createJob),
		newRoute(svcControl, http.MethodGet, "/jobs/{jobId}", "DescribeJob", (*Server).describeJob),
		newRoute(svcControl, http.MethodGet, "/jobs", "ListJobs", (*Server).listJobs),
		newRoute(svcControl, http.MethodGet, "/jobs/{jobId}/job-document", "GetJobDocument", (*Server).getJobDocument),
		newRoute(svcControl, http.MethodPut, "/jobs/{jobId}/cancel", "CancelJob", (*Server).cancelJob),
		newRoute(svcControl, http.MethodGet, "/jobs/{jobId}/things", "ListJobExecutionsForJob", (*Server).listJobExecutionsForJob),
		newRoute(svcControl, http.MethodGet, "/things/{thingName}/jobs/{jobId}", "DescribeJobExecution", (*Server).describeJobExecution),
		newRoute(svcControl, http.MethodGet, "/things/{thingName}/jobs", "ListJobExecutionsForThing", (*Server).listJobExecutionsForThing),
	)
}

func (s *Server) jobsService() (Jobs, error) {
	if s.o.Jobs == nil {
		return nil, internal("Jobs")
	}
	return s.o.Jobs, nil
}

// fromJobs maps the jobs service's errors to AWS's.
func fromJobs(err error) error {
	var je *jobs.Error
	msg := err.Error()
	if errors.As(err, &je) {
		msg = je.Msg
	}
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return errorf(http.StatusNotFound, "ResourceNotFoundException", "%s", msg)
	case errors.Is(err, jobs.ErrExists):
		return errorf(http.StatusConflict, "ResourceAlreadyExistsException", "%s", msg)
	case errors.Is(err, jobs.ErrInvalid):
		return invalid("%s", msg)
	case errors.Is(err, jobs.ErrConflict):
		// CancelJob's model lists no 409: a state conflict is a bad request.
		return invalid("%s", msg)
	}
	return err
}

func checkJobID(v string) error {
	if err := checkLen(v, "jobId", 1, 64); err != nil {
		return err
	}
	if !jobs.ValidJobID(v) {
		return validation(v, "jobId", "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+")
	}
	return nil
}

var executionStatuses = map[string]bool{
	jobs.StatusQueued: true, jobs.StatusInProgress: true, jobs.StatusSucceeded: true, jobs.StatusFailed: true,
	jobs.StatusTimedOut: true, jobs.StatusRejected: true, jobs.StatusRemoved: true, jobs.StatusCanceled: true,
}

func statusParam(c *call) (string, error) {
	st := c.query.Get("status")
	if st != "" && !executionStatuses[st] {
		return "", validation(st, "status", "Member must satisfy enum value set: [QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED]")
	}
	return st, nil
}

// createJob serves PUT /jobs/{jobId}.
func (s *Server) createJob(c *call) error {
	id := c.labels["jobId"]
	if err := checkJobID(id); err != nil {
		return err
	}
	var in struct {
		Targets            []string                 `json:"targets"`
		Document           string                   `json:"document"`
		DocumentSource     string                   `json:"documentSource"`
		Description        string                   `json:"description"`
		TargetSelection    string                   `json:"targetSelection"`
		PresignedURLConfig *jobs.PresignedURLConfig `json:"presignedUrlConfig"`
		TimeoutConfig      *jobs.TimeoutConfig      `json:"timeoutConfig"`
	}
	if len(bytes.TrimSpace(c.body)) > 0 {
		if err := json.Unmarshal(c.body, &in); err != nil {
			return invalid("The request body is not a valid CreateJob request: %v", err)
		}
	}
	js, err := s.jobsService()
	if err != nil {
		return err
	}
	j, err := js.CreateJob(jobs.CreateJobInput{
		JobID: id, Targets: in.Targets, Document: in.Document, DocumentSource: in.DocumentSource,
		Description: in.Description, TargetSelection: in.TargetSelection,
		PresignedURLConfig: in.PresignedURLConfig, TimeoutConfig: in.TimeoutConfig,
	})
	if err != nil {
		return fromJobs(err)
	}
	return writeJSON(c.w, struct {
		JobARN      string `json:"jobArn"`
		JobID       string `json:"jobId"`
		Description string `json:"description,omitempty"`
	}{j.ARN, j.JobID, j.Description})
}

type processDetails struct {
	Canceled   int `json:"numberOfCanceledThings"`
	Succeeded  int `json:"numberOfSucceededThings"`
	Failed     int `json:"numberOfFailedThings"`
	Rejected   int `json:"numberOfRejectedThings"`
	Queued     int `json:"numberOfQueuedThings"`
	InProgress int `json:"numberOfInProgressThings"`
	Removed    int `json:"numberOfRemovedThings"`
	TimedOut   int `json:"numberOfTimedOutThings"`
}

// describeJob serves GET /jobs/{jobId}.
func (s *Server) describeJob(c *call) error {
	id := c.labels["jobId"]
	if err := checkJobID(id); err != nil {
		return err
	}
	js, err := s.jobsService()
	if err != nil {
		return err
	}
	j, err := js.DescribeJob(id)
	if err != nil {
		return fromJobs(err)
	}
	type job struct {
		JobARN             string                   `json:"jobArn"`
		JobID              string                   `json:"jobId"`
		TargetSelection    string                   `json:"targetSelection"`
		Status             string                   `json:"status"`
		ForceCanceled      bool                     `json:"forceCanceled"`
		ReasonCode         string                   `json:"reasonCode,omitempty"`
		Comment            string                   `json:"comment,omitempty"`
		Targets            []string                 `json:"targets"`
		Description        string                   `json:"description,omitempty"`
		PresignedURLConfig *jobs.PresignedURLConfig `json:"presignedUrlConfig,omitempty"`
		TimeoutConfig      *jobs.TimeoutConfig      `json:"timeoutConfig,omitempty"`
		CreatedAt          epoch                    `json:"createdAt"`
		LastUpdatedAt      epoch                    `json:"lastUpdatedAt"`
		CompletedAt        *epoch                   `json:"completedAt,omitempty"`
		JobProcessDetails  processDetails           `json:"jobProcessDetails"`
		IsConcurrent       bool                     `json:"isConcurrent"`
	}
	p := j.Process
	out := job{
		JobARN: j.ARN, JobID: j.JobID, TargetSelection: j.TargetSelection, Status: j.Status,
		ForceCanceled: j.ForceCanceled, ReasonCode: j.ReasonCode, Comment: j.Comment, Targets: j.Targets,
		Description: j.Description, PresignedURLConfig: j.PresignedURLConfig, TimeoutConfig: j.TimeoutConfig,
		CreatedAt: epoch(j.CreatedAt), LastUpdatedAt: epoch(j.LastUpdatedAt),
		JobProcessDetails: processDetails{
			Canceled: p[jobs.StatusCanceled], Succeeded: p[jobs.StatusSucceeded], Failed: p[jobs.StatusFailed],
			Rejected: p[jobs.StatusRejected], Queued: p[jobs.StatusQueued], InProgress: p[jobs.StatusInProgress],
			Removed: p[jobs.StatusRemoved], TimedOut: p[jobs.StatusTimedOut],
		},
	}
	if !j.CompletedAt.IsZero() {
		t := epoch(j.CompletedAt)
		out.CompletedAt = &t
	}
	return writeJSON(c.w, struct {
		DocumentSource string `json:"documentSource,omitempty"`
		Job            job    `json:"job"`
	}{j.DocumentSource, out})
}

// listJobs serves GET /jobs.
func (s *Server) listJobs(c *call) error {
	js, err := s.jobsService()
	if err != nil {
		return err
	}
	st := c.query.Get("status")
	switch st {
	case "", jobs.JobInProgress, jobs.JobCanceled, jobs.JobCompleted:
	default:
		return validation(st, "status", "Member must satisfy enum value set: [IN_PROGRESS, CANCELED, COMPLETED, DELETION_IN_PROGRESS, SCHEDULED]")
	}
	all := js.ListJobs(st)
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return err
	}
	type summary struct {
		JobARN          string `json:"jobArn"`
		JobID           string `json:"jobId"`
		TargetSelection string `json:"targetSelection"`
		Status          string `json:"status"`
		IsConcurrent    bool   `json:"isConcurrent"`
		CreatedAt       epoch  `json:"createdAt"`
		LastUpdatedAt   epoch  `json:"lastUpdatedAt"`
		CompletedAt     *epoch `json:"completedAt,omitempty"`
	}
	out := make([]summary, 0, end-start)
	for _, j := range all[start:end] {
		sm := summary{JobARN: j.ARN, JobID: j.JobID, TargetSelection: j.TargetSelection, Status: j.Status,
			CreatedAt: epoch(j.CreatedAt), LastUpdatedAt: epoch(j.LastUpdatedAt)}
		if !j.CompletedAt.IsZero() {
			t := epoch(j.CompletedAt)
			sm.CompletedAt = &t
		}
		out = append(out, sm)
	}
	return writeJSON(c.w, struct {
		Jobs      []summary `json:"jobs"`
		NextToken string    `json:"nextToken,omitempty"`
	}{out, next})
}

// getJobDocument serves GET /jobs/{jobId}/job-document: the document as
// created, placeholders not substituted.
func (s *Server) getJobDocument(c *call) error {
	id := c.labels["jobId"]
	if err := checkJobID(id); err != nil {
		return err
	}
	js, err := s.jobsService()
	if err != nil {
		return err
	}
	doc, err := js.GetJobDocument(id)
	if err != nil {
		return fromJobs(err)
	}
	return writeJSON(c.w, struct {
		Document string `json:"document"`
	}{doc})
}

// cancelJob serves PUT /jobs/{jobId}/cancel?force=.
func (s *Server) cancelJob(c *call) error {
	id := c.labels["jobId"]
	if err := checkJobID(id); err != nil {
		return err
	}
	force, err := boolParam(c.query, "force")
	if err != nil {
		return err
	}
	var in struct {
		ReasonCode string `json:"reasonCode"`
		Comment    string `json:"comment"`
	}
	if len(bytes.TrimSpace(c.body)) > 0 {
		if err := json.Unmarshal(c.body, &in); err != nil {
			return invalid("The request body is not a valid CancelJob request: %v", err)
		}
	}
	if err := checkLen(in.ReasonCode, "reasonCode", 0, 128); err != nil {
		return err
	}
	if err := checkLen(in.Comment, "comment", 0, 2028); err != nil {
		return err
	}
	js, err := s.jobsService()
	if err != nil {
		return err
	}
	j, err := js.CancelJob(id, force, in.ReasonCode, in.Comment)
	if err != nil {
		return fromJobs(err)
	}
	return writeJSON(c.w, struct {
		JobARN      string `json:"jobArn"`
		JobID       string `json:"jobId"`
		Description string `json:"description,omitempty"`
	}{j.ARN, j.JobID, j.Description})
}

// execSummary is AWS's JobExecutionSummary.
type execSummary struct {
	Status          string `json:"status"`
	QueuedAt        epoch  `json:"queuedAt"`
	StartedAt       *epoch `json:"startedAt,omitempty"`
	LastUpdatedAt   epoch  `json:"lastUpdatedAt"`
	ExecutionNumber int64  `json:"executionNumber"`
	RetryAttempt    int    `json:"retryAttempt"`
}

func summarize(e jobs.Execution) execSummary {
	out := execSummary{Status: e.Status, QueuedAt: epoch(e.QueuedAt), LastUpdatedAt: epoch(e.LastUpdatedAt),
		ExecutionNumber: e.ExecutionNumber}
	if !e.StartedAt.IsZero() {
		t := epoch(e.StartedAt)
		out.StartedAt = &t
	}
	return out
}

// listJobExecutionsForJob serves GET /jobs/{jobId}/things.
func (s *Server) listJobExecutionsForJob(c *call) error {
	id := c.labels["jobId"]
	if err := checkJobID(id); err != nil {
		return err
	}
	st, err := statusParam(c)
	if err != nil {
		return err
	}
	js, err := s.jobsService()
	if err != nil {
		return err
	}
	all, err := js.ListJobExecutionsForJob(id, st)
	if err != nil {
		return fromJobs(err)
	}
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return err
	}
	type item struct {
		ThingARN string      `json:"thingArn"`
		Summary  execSummary `json:"jobExecutionSummary"`
	}
	out := make([]item, 0, end-start)
	for _, e := range all[start:end] {
		out = append(out, item{js.ThingARN(e.ThingName), summarize(e)})
	}
	return writeJSON(c.w, struct {
		ExecutionSummaries []item `json:"executionSummaries"`
		NextToken          string `json:"nextToken,omitempty"`
	}{out, next})
}

// describeJobExecution serves GET /things/{thingName}/jobs/{jobId}.
func (s *Server) describeJobExecution(c *call) error {
	thing, id := c.labels["thingName"], c.labels["jobId"]
	if err := checkThingName("thingName", thing); err != nil {
		return err
	}
	if err := checkJobID(id); err != nil {
		return err
	}
	var num int64
	if v := c.query.Get("executionNumber"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return invalid("Value '%s' for 'executionNumber' is not a positive integer", truncate(v, 64))
		}
		num = n
	}
	js, err := s.jobsService()
	if err != nil {
		return err
	}
	e, err := js.DescribeJobExecution(thing, id, num)
	if err != nil {
		return fromJobs(err)
	}
	type execution struct {
		JobID         string `json:"jobId"`
		Status        string `json:"status"`
		ForceCanceled bool   `json:"forceCanceled"`
		StatusDetails struct {
			DetailsMap map[string]string `json:"detailsMap,omitempty"`
		} `json:"statusDetails"`
		ThingARN                         string `json:"thingArn"`
		QueuedAt                         epoch  `json:"queuedAt"`
		StartedAt                        *epoch `json:"startedAt,omitempty"`
		LastUpdatedAt                    epoch  `json:"lastUpdatedAt"`
		ExecutionNumber                  int64  `json:"executionNumber"`
		VersionNumber                    int64  `json:"versionNumber"`
		ApproximateSecondsBeforeTimedOut int64  `json:"approximateSecondsBeforeTimedOut,omitempty"`
	}
	out := execution{JobID: e.JobID, Status: e.Status, ForceCanceled: e.ForceCanceled, ThingARN: js.ThingARN(thing),
		QueuedAt: epoch(e.QueuedAt), LastUpdatedAt: epoch(e.LastUpdatedAt), ExecutionNumber: e.ExecutionNumber,
		VersionNumber: e.VersionNumber, ApproximateSecondsBeforeTimedOut: e.SecondsBeforeTimedOut(s.now())}
	out.StatusDetails.DetailsMap = e.StatusDetails
	if !e.StartedAt.IsZero() {
		t := epoch(e.StartedAt)
		out.StartedAt = &t
	}
	return writeJSON(c.w, struct {
		Execution execution `json:"execution"`
	}{out})
}

// listJobExecutionsForThing serves GET /things/{thingName}/jobs.
func (s *Server) listJobExecutionsForThing(c *call) error {
	thing := c.labels["thingName"]
	if err := checkThingName("thingName", thing); err != nil {
		return err
	}
	st, err := statusParam(c)
	if err != nil {
		return err
	}
	jobID := c.query.Get("jobId")
	if jobID != "" {
		if err := checkJobID(jobID); err != nil {
			return err
		}
	}
	js, err := s.jobsService()
	if err != nil {
		return err
	}
	all := js.ListJobExecutionsForThing(thing, st, jobID)
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return err
	}
	type item struct {
		JobID   string      `json:"jobId"`
		Summary execSummary `json:"jobExecutionSummary"`
	}
	out := make([]item, 0, end-start)
	for _, e := range all[start:end] {
		out = append(out, item{e.JobID, summarize(e)})
	}
	return writeJSON(c.w, struct {
		ExecutionSummaries []item `json:"executionSummaries"`
		NextToken          string `json:"nextToken,omitempty"`
	}{out, next})
}
