package api

import (
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/cloud/store"
)

// newJobsEnv is an env with a Jobs service (no object store) and things.
func newJobsEnv(t testing.TB, things ...string) (*env, *jobs.Service) {
	t.Helper()
	var svc *jobs.Service
	e := newEnv(t, func(o *Options) {
		db, err := store.Open(filepath.Join(t.TempDir(), "jobs.db"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		svc, err = jobs.New(jobs.Options{DB: db, Registry: o.Registry.(jobs.Registry), Now: func() time.Time { return testNow }})
		if err != nil {
			t.Fatal(err)
		}
		o.Jobs = svc
	})
	for _, th := range things {
		if _, err := e.reg.CreateThing(th, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	return e, svc
}

func signedFor(service string) []string {
	return []string{"Authorization", "AWS4-HMAC-SHA256 Credential=test/20240601/us-east-1/" + service +
		"/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("0", 64)}
}

func TestJobsREST(t *testing.T) {
	e, svc := newJobsEnv(t, "box-1", "box-2")
	create := `{"targets":["arn:aws:iot:us-east-1:123456789012:thing/box-1","arn:aws:iot:us-east-1:123456789012:thing/box-2"],` +
		`"document":"{\"operation\":\"install\"}","description":"d","timeoutConfig":{"inProgressTimeoutInMinutes":5}}`
	var created map[string]any
	e.do(t, "PUT", "/jobs/job-1", []byte(create)).json(t, &created)
	if diff := cmp.Diff(map[string]any{"jobArn": "arn:aws:iot:us-east-1:123456789012:job/job-1", "jobId": "job-1", "description": "d"}, created); diff != "" {
		t.Errorf("CreateJob (-want +got):\n%s", diff)
	}
	errs := []struct {
		name, method, target, body string
		status                     int
		code                       string
	}{
		{"duplicate", "PUT", "/jobs/job-1", create, 409, "ResourceAlreadyExistsException"},
		{"bad job id", "PUT", "/jobs/a.b", create, 400, "InvalidRequestException"},
		{"body not JSON", "PUT", "/jobs/job-2", `{`, 400, "InvalidRequestException"},
		{"no targets", "PUT", "/jobs/job-2", `{"document":"{}"}`, 400, "InvalidRequestException"},
		{"unknown thing", "PUT", "/jobs/job-2", `{"targets":["arn:aws:iot:us-east-1:123456789012:thing/nope"],"document":"{}"}`, 404, "ResourceNotFoundException"},
		{"documentSource without a store", "PUT", "/jobs/job-2", `{"targets":["arn:aws:iot:us-east-1:123456789012:thing/box-1"],"documentSource":"s3://bkt/doc.json"}`, 400, "InvalidRequestException"},
		{"describe unknown", "GET", "/jobs/nope", "", 404, "ResourceNotFoundException"},
		{"document of unknown", "GET", "/jobs/nope/job-document", "", 404, "ResourceNotFoundException"},
		{"cancel unknown", "PUT", "/jobs/nope/cancel", "", 404, "ResourceNotFoundException"},
		{"cancel bad force", "PUT", "/jobs/job-1/cancel?force=maybe", "", 400, "InvalidRequestException"},
		{"execution unknown", "GET", "/things/box-1/jobs/nope", "", 404, "ResourceNotFoundException"},
		{"execution number", "GET", "/things/box-1/jobs/job-1?executionNumber=2", "", 404, "ResourceNotFoundException"},
		{"bad status filter", "GET", "/things/box-1/jobs?status=DONE", "", 400, "InvalidRequestException"},
		{"bad page token", "GET", "/jobs/job-1/things?nextToken=zzz", "", 400, "InvalidRequestException"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			e.wantError(t, e.do(t, tc.method, tc.target, body), tc.status, tc.code)
		})
	}

	var doc map[string]string
	e.do(t, "GET", "/jobs/job-1/job-document", nil).json(t, &doc)
	if doc["document"] != `{"operation":"install"}` {
		t.Errorf("GetJobDocument %v", doc)
	}
	var described map[string]any
	e.do(t, "GET", "/jobs/job-1", nil).json(t, &described)
	job := described["job"].(map[string]any)
	if job["status"] != "IN_PROGRESS" || job["createdAt"] != float64(testNow.Unix()) ||
		job["jobProcessDetails"].(map[string]any)["numberOfQueuedThings"] != float64(2) ||
		job["timeoutConfig"].(map[string]any)["inProgressTimeoutInMinutes"] != float64(5) {
		t.Errorf("DescribeJob %v", described)
	}

	// Paging through ListJobExecutionsForJob one at a time.
	var things []string
	target := "/jobs/job-1/things?maxResults=1"
	for range 5 {
		var page struct {
			ExecutionSummaries []struct {
				ThingARN string         `json:"thingArn"`
				Summary  map[string]any `json:"jobExecutionSummary"`
			} `json:"executionSummaries"`
			NextToken string `json:"nextToken"`
		}
		e.do(t, "GET", target, nil).json(t, &page)
		for _, s := range page.ExecutionSummaries {
			things = append(things, s.ThingARN)
			if s.Summary["status"] != "QUEUED" || s.Summary["queuedAt"] != float64(testNow.Unix()) {
				t.Errorf("summary %v", s.Summary)
			}
		}
		if page.NextToken == "" {
			break
		}
		target = "/jobs/job-1/things?maxResults=1&nextToken=" + page.NextToken
	}
	if diff := cmp.Diff([]string{"arn:aws:iot:us-east-1:123456789012:thing/box-1", "arn:aws:iot:us-east-1:123456789012:thing/box-2"}, things); diff != "" {
		t.Errorf("paged executions (-want +got):\n%s", diff)
	}

	// The path is shared with iot-jobs-data: the SigV4 service decides.
	e.do(t, "GET", "/things/box-1/jobs/job-1", nil, signedFor("iot")...).json(t, &described)
	ex := described["execution"].(map[string]any)
	if ex["status"] != "QUEUED" || ex["thingArn"] != "arn:aws:iot:us-east-1:123456789012:thing/box-1" ||
		ex["versionNumber"] != float64(1) || ex["forceCanceled"] != false {
		t.Errorf("DescribeJobExecution %v", described)
	}
	if r := e.do(t, "GET", "/things/box-1/jobs/job-1", nil, signedFor("iot-jobs-data")...); r.Status == http.StatusOK {
		t.Errorf("an iot-jobs-data request reached the control plane: %s", r.Body)
	}
	var forThing map[string]any
	e.do(t, "GET", "/things/box-1/jobs?status=QUEUED", nil).json(t, &forThing)
	if n := len(forThing["executionSummaries"].([]any)); n != 1 {
		t.Errorf("ListJobExecutionsForThing %v", forThing)
	}

	// Cancel with force, then a completed job cannot be cancelled.
	var cancelled map[string]any
	e.do(t, "PUT", "/jobs/job-1/cancel?force=true", []byte(`{"reasonCode":"BAD_BUILD","comment":"c"}`)).json(t, &cancelled)
	if cancelled["jobId"] != "job-1" {
		t.Errorf("CancelJob %v", cancelled)
	}
	if j, _ := svc.DescribeJob("job-1"); j.Status != jobs.JobCanceled || !j.ForceCanceled || j.ReasonCode != "BAD_BUILD" {
		t.Errorf("after CancelJob: %+v", j)
	}
	e.do(t, "PUT", "/jobs/empty", []byte(`{"targets":["arn:aws:iot:us-east-1:123456789012:thinggroup/none"],"document":"{}"}`))
	var list map[string]any
	e.do(t, "GET", "/jobs", nil).json(t, &list)
	if n := len(list["jobs"].([]any)); n != 1 {
		t.Errorf("ListJobs %v", list)
	}
}

func TestJobsWithoutService(t *testing.T) {
	e := newEnv(t, nil)
	e.wantError(t, e.do(t, "GET", "/jobs/job-1", nil), 500, "InternalFailureException")
}

func FuzzCreateJobBody(f *testing.F) {
	f.Add(`{"targets":["arn:aws:iot:us-east-1:123456789012:thing/box-1"],"document":"{}"}`)
	f.Add(`{"targets":["arn:aws:iot:us-east-1:123456789012:thinggroup/g"],"document":"{\"a\":\"${aws:iot:s3-presigned-url:s3://b/k}\"}","presignedUrlConfig":{"expiresInSec":60}}`)
	f.Add(`{"targets":[],"documentSource":"https://s3.amazonaws.com/b/k","timeoutConfig":{"inProgressTimeoutInMinutes":-1}}`)
	e, _ := newJobsEnv(f, "box-1")
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, body string) {
		r := e.do(t, "PUT", "/jobs/fuzz-"+strconv.FormatInt(n.Add(1), 10), []byte(body))
		if r.Status != 200 && r.Status != 400 && r.Status != 404 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
	})
}
