package api

import (
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
	mapJobs := func(_ *jobIn, err error) error { return fromJobs(err) }
	routes = append(routes,
		op[createJobIn]{"CreateJob", svcControl, http.MethodPut, "/jobs/{jobId}", (*Server).createJob,
			func(_ *createJobIn, err error) error { return fromJobs(err) }}.route(),
		op[jobIn]{"DescribeJob", svcControl, http.MethodGet, "/jobs/{jobId}", (*Server).describeJob, mapJobs}.route(),
		op[listJobsIn]{"ListJobs", svcControl, http.MethodGet, "/jobs", (*Server).listJobs, nil}.route(),
		op[jobIn]{"GetJobDocument", svcControl, http.MethodGet, "/jobs/{jobId}/job-document", (*Server).getJobDocument, mapJobs}.route(),
		op[cancelJobIn]{"CancelJob", svcControl, http.MethodPut, "/jobs/{jobId}/cancel", (*Server).cancelJob,
			func(_ *cancelJobIn, err error) error { return fromJobs(err) }}.route(),
		op[listForJobIn]{"ListJobExecutionsForJob", svcControl, http.MethodGet, "/jobs/{jobId}/things", (*Server).listJobExecutionsForJob,
			func(_ *listForJobIn, err error) error { return fromJobs(err) }}.route(),
		op[describeExecutionIn]{"DescribeJobExecution", svcControl, http.MethodGet, "/things/{thingName}/jobs/{jobId}", (*Server).describeJobExecution,
			func(_ *describeExecutionIn, err error) error { return fromJobs(err) }}.route(),
		op[listForThingIn]{"ListJobExecutionsForThing", svcControl, http.MethodGet, "/things/{thingName}/jobs", (*Server).listJobExecutionsForThing, nil}.route(),
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

func checkExecutionStatus(st string) error {
	if st != "" && !executionStatuses[st] {
		return validation(st, "status", "Member must satisfy enum value set: [QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED]")
	}
	return nil
}

// jobIn is the input of operations on one job.
type jobIn struct {
	JobID string `uri:"jobId" check:"job"`
}

type createJobIn struct {
	JobID              string                   `uri:"jobId" check:"job"`
	Targets            []string                 `json:"targets"`
	Document           string                   `json:"document"`
	DocumentSource     string                   `json:"documentSource"`
	Description        string                   `json:"description"`
	TargetSelection    string                   `json:"targetSelection"`
	PresignedURLConfig *jobs.PresignedURLConfig `json:"presignedUrlConfig"`
	TimeoutConfig      *jobs.TimeoutConfig      `json:"timeoutConfig"`
}

// createJob serves PUT /jobs/{jobId}.
func (s *Server) createJob(_ *call, in *createJobIn) (any, error) {
	js, err := s.jobsService()
	if err != nil {
		return nil, err
	}
	j, err := js.CreateJob(jobs.CreateJobInput{
		JobID: in.JobID, Targets: in.Targets, Document: in.Document, DocumentSource: in.DocumentSource,
		Description: in.Description, TargetSelection: in.TargetSelection,
		PresignedURLConfig: in.PresignedURLConfig, TimeoutConfig: in.TimeoutConfig,
	})
	if err != nil {
		return nil, err
	}
	return struct {
		JobARN      string `json:"jobArn"`
		JobID       string `json:"jobId"`
		Description string `json:"description,omitempty"`
	}{j.ARN, j.JobID, j.Description}, nil
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
func (s *Server) describeJob(_ *call, in *jobIn) (any, error) {
	js, err := s.jobsService()
	if err != nil {
		return nil, err
	}
	j, err := js.DescribeJob(in.JobID)
	if err != nil {
		return nil, err
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
	return struct {
		DocumentSource string `json:"documentSource,omitempty"`
		Job            job    `json:"job"`
	}{j.DocumentSource, out}, nil
}

type listJobsIn struct {
	Status string `query:"status"`
}

func (in *listJobsIn) validate() error {
	switch in.Status {
	case "", jobs.JobInProgress, jobs.JobCanceled, jobs.JobCompleted:
		return nil
	}
	return validation(in.Status, "status", "Member must satisfy enum value set: [IN_PROGRESS, CANCELED, COMPLETED, DELETION_IN_PROGRESS, SCHEDULED]")
}

// listJobs serves GET /jobs.
func (s *Server) listJobs(c *call, in *listJobsIn) (any, error) {
	js, err := s.jobsService()
	if err != nil {
		return nil, err
	}
	all := js.ListJobs(in.Status)
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return nil, err
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
	return struct {
		Jobs      []summary `json:"jobs"`
		NextToken string    `json:"nextToken,omitempty"`
	}{out, next}, nil
}

// getJobDocument serves GET /jobs/{jobId}/job-document: the document as
// created, placeholders not substituted.
func (s *Server) getJobDocument(_ *call, in *jobIn) (any, error) {
	js, err := s.jobsService()
	if err != nil {
		return nil, err
	}
	doc, err := js.GetJobDocument(in.JobID)
	if err != nil {
		return nil, err
	}
	return struct {
		Document string `json:"document"`
	}{doc}, nil
}

type cancelJobIn struct {
	JobID      string `uri:"jobId" check:"job"`
	Force      bool   `query:"force"`
	ReasonCode string `json:"reasonCode"`
	Comment    string `json:"comment"`
}

func (in *cancelJobIn) validate() error {
	if err := checkLen(in.ReasonCode, "reasonCode", 0, 128); err != nil {
		return err
	}
	return checkLen(in.Comment, "comment", 0, 2028)
}

// cancelJob serves PUT /jobs/{jobId}/cancel?force=.
func (s *Server) cancelJob(_ *call, in *cancelJobIn) (any, error) {
	js, err := s.jobsService()
	if err != nil {
		return nil, err
	}
	j, err := js.CancelJob(in.JobID, in.Force, in.ReasonCode, in.Comment)
	if err != nil {
		return nil, err
	}
	return struct {
		JobARN      string `json:"jobArn"`
		JobID       string `json:"jobId"`
		Description string `json:"description,omitempty"`
	}{j.ARN, j.JobID, j.Description}, nil
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

type listForJobIn struct {
	JobID  string `uri:"jobId" check:"job"`
	Status string `query:"status"`
}

func (in *listForJobIn) validate() error { return checkExecutionStatus(in.Status) }

// listJobExecutionsForJob serves GET /jobs/{jobId}/things.
func (s *Server) listJobExecutionsForJob(c *call, in *listForJobIn) (any, error) {
	js, err := s.jobsService()
	if err != nil {
		return nil, err
	}
	all, err := js.ListJobExecutionsForJob(in.JobID, in.Status)
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return nil, err
	}
	type item struct {
		ThingARN string      `json:"thingArn"`
		Summary  execSummary `json:"jobExecutionSummary"`
	}
	out := make([]item, 0, end-start)
	for _, e := range all[start:end] {
		out = append(out, item{js.ThingARN(e.ThingName), summarize(e)})
	}
	return struct {
		ExecutionSummaries []item `json:"executionSummaries"`
		NextToken          string `json:"nextToken,omitempty"`
	}{out, next}, nil
}

type describeExecutionIn struct {
	Thing           string `uri:"thingName" check:"thing"`
	JobID           string `uri:"jobId" check:"job"`
	ExecutionNumber string `query:"executionNumber"`
	number          int64
}

func (in *describeExecutionIn) validate() error {
	if v := in.ExecutionNumber; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return invalid("Value '%s' for 'executionNumber' is not a positive integer", truncate(v, 64))
		}
		in.number = n
	}
	return nil
}

// describeJobExecution serves GET /things/{thingName}/jobs/{jobId}.
func (s *Server) describeJobExecution(_ *call, in *describeExecutionIn) (any, error) {
	js, err := s.jobsService()
	if err != nil {
		return nil, err
	}
	e, err := js.DescribeJobExecution(in.Thing, in.JobID, in.number)
	if err != nil {
		return nil, err
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
	out := execution{JobID: e.JobID, Status: e.Status, ForceCanceled: e.ForceCanceled, ThingARN: js.ThingARN(in.Thing),
		QueuedAt: epoch(e.QueuedAt), LastUpdatedAt: epoch(e.LastUpdatedAt), ExecutionNumber: e.ExecutionNumber,
		VersionNumber: e.VersionNumber, ApproximateSecondsBeforeTimedOut: e.SecondsBeforeTimedOut(s.now())}
	out.StatusDetails.DetailsMap = e.StatusDetails
	if !e.StartedAt.IsZero() {
		t := epoch(e.StartedAt)
		out.StartedAt = &t
	}
	return struct {
		Execution execution `json:"execution"`
	}{out}, nil
}

type listForThingIn struct {
	Thing  string `uri:"thingName" check:"thing"`
	Status string `query:"status"`
	JobID  string `query:"jobId" check:"job"`
}

func (in *listForThingIn) validate() error { return checkExecutionStatus(in.Status) }

// listJobExecutionsForThing serves GET /things/{thingName}/jobs.
func (s *Server) listJobExecutionsForThing(c *call, in *listForThingIn) (any, error) {
	js, err := s.jobsService()
	if err != nil {
		return nil, err
	}
	all := js.ListJobExecutionsForThing(in.Thing, in.Status, in.JobID)
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return nil, err
	}
	type item struct {
		JobID   string      `json:"jobId"`
		Summary execSummary `json:"jobExecutionSummary"`
	}
	out := make([]item, 0, end-start)
	for _, e := range all[start:end] {
		out = append(out, item{e.JobID, summarize(e)})
	}
	return struct {
		ExecutionSummaries []item `json:"executionSummaries"`
		NextToken          string `json:"nextToken,omitempty"`
	}{out, next}, nil
}
