package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const pfx = "$aws/things/box-1/jobs/"

func TestTopicsAndErrorCodes(t *testing.T) {
	e := newEnv(t, "box-1")
	e.createJob(t, "job1", `{"operation":"install"}`, "box-1")
	e.take()
	tests := []struct {
		name, api, payload string
		code               string // "" means accepted
	}{
		{"get", "get", `{}`, ""},
		{"get with empty payload", "get", ``, ""},
		{"get echoes unknown fields", "get", `{"thingName":"box-1","jobId":"x"}`, ""},
		{"describe", "job1/get", `{}`, ""},
		{"describe $next", "$next/get", `{}`, ""},
		{"describe unknown job", "nojob/get", `{}`, CodeResourceNotFound},
		{"describe other execution number", "job1/get", `{"executionNumber":2}`, CodeResourceNotFound},
		{"describe bad includeJobDocument", "job1/get", `{"includeJobDocument":"yes"}`, CodeInvalidRequest},
		{"update unknown job", "nojob/update", `{"status":"IN_PROGRESS"}`, CodeResourceNotFound},
		{"update $next", "$next/update", `{"status":"IN_PROGRESS"}`, CodeInvalidTopic},
		{"unknown api", "foo", `{}`, CodeInvalidTopic},
		{"too deep", "job1/get/more", `{}`, CodeInvalidTopic},
		{"bad job id", "bad.id/get", `{}`, CodeInvalidTopic},
		{"not JSON", "get", `{"clientToken":`, CodeInvalidJSON},
		{"not UTF-8", "get", "{\"clientToken\":\"\xff\"}", CodeInvalidJSON},
		{"not an object", "get", `[1,2]`, CodeInvalidRequest},
		{"token too long", "get", `{"clientToken":"` + strings.Repeat("t", 65) + `"}`, CodeInvalidRequest},
		{"token not a string", "get", `{"clientToken":7}`, CodeInvalidRequest},
		{"update without status", "job1/update", `{}`, CodeInvalidRequest},
		{"update status QUEUED", "job1/update", `{"status":"QUEUED"}`, CodeInvalidRequest},
		{"update status CANCELED", "job1/update", `{"status":"CANCELED"}`, CodeInvalidRequest},
		{"update unknown status", "job1/update", `{"status":"DONE"}`, CodeInvalidRequest},
		{"statusDetails not strings", "job1/update", `{"status":"IN_PROGRESS","statusDetails":{"a":1}}`, CodeInvalidRequest},
		{"statusDetails bad key", "job1/update", `{"status":"IN_PROGRESS","statusDetails":{"a b":"x"}}`, CodeInvalidRequest},
		{"statusDetails empty value", "job1/update", `{"status":"IN_PROGRESS","statusDetails":{"a":""}}`, CodeInvalidRequest},
		{"statusDetails control char", "job1/update", `{"status":"IN_PROGRESS","statusDetails":{"a":"x\u0007"}}`, CodeInvalidRequest},
		{"statusDetails value too long", "job1/update", `{"status":"IN_PROGRESS","statusDetails":{"a":"` + strings.Repeat("x", 1025) + `"}}`, CodeInvalidRequest},
		{"expectedVersion not numeric", "job1/update", `{"status":"IN_PROGRESS","expectedVersion":"one"}`, CodeInvalidRequest},
		{"stepTimeout zero", "job1/update", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":0}`, CodeInvalidRequest},
		{"stepTimeout too long", "start-next", `{"stepTimeoutInMinutes":10081}`, CodeInvalidRequest},
		{"version mismatch", "job1/update", `{"status":"IN_PROGRESS","expectedVersion":5}`, CodeVersionMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := e.request(t, "box-1", tc.api, tc.payload)
			wantTopic := pfx + tc.api + "/accepted"
			if tc.code != "" {
				wantTopic = pfx + tc.api + "/rejected"
			}
			if a.Topic != wantTopic {
				t.Fatalf("answer on %s, want %s: %v", a.Topic, wantTopic, a.Payload)
			}
			if got, _ := a.Payload["code"].(string); got != tc.code {
				t.Errorf("code %q, want %q (%v)", got, tc.code, a.Payload)
			}
			if _, ok := a.Payload["timestamp"].(float64); !ok {
				t.Errorf("no timestamp: %v", a.Payload)
			}
		})
	}
	// The service's own topics and the answer topics get no answer.
	for _, api := range []string{"notify", "notify-next", "get/accepted", "job1/update/rejected"} {
		e.svc.HandleRequest(nil, pfx+api, []byte(`{}`))
		e.svc.HandleRequest(&brokerPrincipal, pfx+api, []byte(`{}`))
		if m := e.take(); len(m) != 0 {
			t.Errorf("%s answered: %v", api, m)
		}
	}
}

func TestFaultsAndClientToken(t *testing.T) {
	e := newEnv(t, "box-1")
	for _, code := range []string{CodeRequestThrottled, CodeInternalError} {
		e.fault = func(string, string) string { return code }
		got, body := e.rejected(t, "box-1", "start-next", `{"clientToken":"tok-1"}`)
		if got != code || body["clientToken"] != "tok-1" {
			t.Errorf("fault %s: %v", code, body)
		}
	}
	e.fault = nil
	body, _ := e.accepted(t, "box-1", "get", `{"clientToken":"tok-2"}`)
	if diff := cmp.Diff(map[string]any{"inProgressJobs": []any{}, "queuedJobs": []any{}, "timestamp": float64(t0.Unix()), "clientToken": "tok-2"}, body); diff != "" {
		t.Errorf("empty get (-want +got):\n%s", diff)
	}
	body, _ = e.accepted(t, "box-1", "start-next", `{}`)
	if _, ok := body["execution"]; ok || body["clientToken"] != nil {
		t.Errorf("start-next with nothing pending: %v", body)
	}
	body, _ = e.accepted(t, "box-1", "$next/get", `{}`)
	if _, ok := body["execution"]; ok {
		t.Errorf("$next/get with nothing pending: %v", body)
	}
}

func TestNotifications(t *testing.T) {
	e := newEnv(t, "box-1")
	step := func(name string, f func() []sent, want ...string) []sent {
		t.Helper()
		got := f()
		if diff := cmp.Diff(want, topics(got)); diff != "" {
			t.Errorf("%s: notifications (-want +got):\n%s", name, diff)
		}
		return got
	}
	create := func(id string) func() []sent {
		return func() []sent { e.createJob(t, id, `{"op":"`+id+`"}`, "box-1"); return e.take() }
	}
	req := func(api, payload string) func() []sent {
		return func() []sent { _, o := e.accepted(t, "box-1", api, payload); return o }
	}
	msgs := step("first job", create("A"), pfx+"notify", pfx+"notify-next")
	next := msgs[1].Payload["execution"].(map[string]any)
	if next["jobId"] != "A" || next["status"] != StatusQueued || next["jobDocument"].(map[string]any)["op"] != "A" {
		t.Errorf("notify-next: %v", msgs[1].Payload)
	}
	step("second job: set changes, head does not", create("B"), pfx+"notify")
	step("third job", create("C"), pfx+"notify")
	step("head starts: nothing", req("start-next", `{}`))
	step("head progresses: nothing", req("A/update", `{"status":"IN_PROGRESS","statusDetails":{"step":"download"}}`))
	step("start-next again: nothing", req("start-next", `{}`))
	msgs = step("non-head C starts after B: head stays A", req("C/update", `{"status":"IN_PROGRESS"}`))
	_ = msgs
	msgs = step("head A succeeds: set and head change", req("A/update", `{"status":"SUCCEEDED"}`), pfx+"notify", pfx+"notify-next")
	if got := msgs[1].Payload["execution"].(map[string]any)["jobId"]; got != "C" {
		t.Errorf("after A the head is %v, want C (IN_PROGRESS first)", got)
	}
	jobsField := msgs[0].Payload["jobs"].(map[string]any)
	if len(jobsField["IN_PROGRESS"].([]any)) != 1 || len(jobsField["QUEUED"].([]any)) != 1 {
		t.Errorf("notify groups: %v", jobsField)
	}
	step("non-head B rejected from QUEUED", req("B/update", `{"status":"REJECTED"}`), pfx+"notify")
	msgs = step("last one fails: queue empty", req("C/update", `{"status":"FAILED"}`), pfx+"notify", pfx+"notify-next")
	if diff := cmp.Diff(map[string]any{"timestamp": float64(t0.Unix()), "jobs": map[string]any{}}, msgs[0].Payload); diff != "" {
		t.Errorf("empty notify (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"timestamp": float64(t0.Unix())}, msgs[1].Payload); diff != "" {
		t.Errorf("empty notify-next (-want +got):\n%s", diff)
	}

	// A non-head execution going IN_PROGRESS first becomes the head.
	e.createJob(t, "D", `{}`, "box-1")
	e.createJob(t, "E", `{}`, "box-1")
	e.take()
	msgs = step("E starts before D", req("E/update", `{"status":"IN_PROGRESS"}`), pfx+"notify-next")
	if got := msgs[0].Payload["execution"].(map[string]any)["jobId"]; got != "E" {
		t.Errorf("head %v, want E", got)
	}
}

func TestNotifyListsAtMostTen(t *testing.T) {
	e := newEnv(t, "box-1")
	for i := range 12 {
		e.createJob(t, fmt.Sprintf("j%02d", i), `{}`, "box-1")
	}
	msgs := e.take()
	last := msgs[len(msgs)-1]
	if last.Topic != pfx+"notify" || len(last.Payload["jobs"].(map[string]any)["QUEUED"].([]any)) != 10 {
		t.Errorf("notify with 12 queued: %v", last)
	}
	body, _ := e.accepted(t, "box-1", "get", `{}`)
	if n := len(body["queuedJobs"].([]any)); n != 12 {
		t.Errorf("get lists %d queued, want 12", n)
	}
}

func TestStateMachine(t *testing.T) {
	type setup func(e *env)
	queued := func(*env) {}
	inProgress := func(e *env) { e.accepted(t, "box-1", "start-next", `{}`) }
	final := func(status string) setup {
		return func(e *env) { e.accepted(t, "box-1", "job1/update", `{"status":"`+status+`"}`) }
	}
	canceled := func(e *env) {
		if _, err := e.svc.CancelJob("job1", false, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	timedOut := func(e *env) {
		e.accepted(t, "box-1", "start-next", `{"stepTimeoutInMinutes":1}`)
		e.clock.Add(time.Minute)
		if err := e.svc.CheckTimeouts(); err != nil {
			t.Fatal(err)
		}
	}
	from := []struct {
		name   string
		setup  setup
		status string
	}{
		{"QUEUED", queued, StatusQueued},
		{"IN_PROGRESS", inProgress, StatusInProgress},
		{"SUCCEEDED", final(StatusSucceeded), StatusSucceeded},
		{"FAILED", final(StatusFailed), StatusFailed},
		{"REJECTED", final(StatusRejected), StatusRejected},
		{"CANCELED", canceled, StatusCanceled},
		{"TIMED_OUT", timedOut, StatusTimedOut},
	}
	for _, f := range from {
		for _, to := range []string{StatusInProgress, StatusSucceeded, StatusFailed, StatusRejected} {
			t.Run(f.name+"->"+to, func(t *testing.T) {
				e := newEnv(t, "box-1")
				e.createJob(t, "job1", `{}`, "box-1")
				f.setup(e)
				ex, _ := e.svc.DescribeJobExecution("box-1", "job1", 0)
				if ex.Status != f.status {
					t.Fatalf("setup: status %s, want %s", ex.Status, f.status)
				}
				e.take()
				a, _ := e.request(t, "box-1", "job1/update", `{"status":"`+to+`","includeJobExecutionState":true}`)
				if terminal(f.status) {
					if a.Payload["code"] != CodeInvalidStateTransition {
						t.Fatalf("answer %v, want InvalidStateTransition", a.Payload)
					}
					st := a.Payload["executionState"].(map[string]any)
					if st["status"] != f.status || num(st["versionNumber"]) != ex.VersionNumber {
						t.Errorf("executionState %v", st)
					}
					return
				}
				if !strings.HasSuffix(a.Topic, "/accepted") {
					t.Fatalf("answer %s %v", a.Topic, a.Payload)
				}
				st := a.Payload["executionState"].(map[string]any)
				if st["status"] != to || num(st["versionNumber"]) != ex.VersionNumber+1 {
					t.Errorf("executionState %v, want %s version %d", st, to, ex.VersionNumber+1)
				}
			})
		}
	}
}

func TestVersionsAndDetails(t *testing.T) {
	e := newEnv(t, "box-1")
	e.createJob(t, "job1", `{"operation":"install"}`, "box-1")
	body, _ := e.accepted(t, "box-1", "start-next", `{"statusDetails":{"step":"start"},"clientToken":"c1"}`)
	ex := body["execution"].(map[string]any)
	if num(ex["versionNumber"]) != 2 || ex["status"] != StatusInProgress || num(ex["startedAt"]) != t0.Unix() ||
		ex["statusDetails"].(map[string]any)["step"] != "start" || ex["jobDocument"].(map[string]any)["operation"] != "install" {
		t.Errorf("start-next execution %v", ex)
	}
	// start-next on an IN_PROGRESS head returns it unchanged.
	body, _ = e.accepted(t, "box-1", "start-next", `{"statusDetails":{"step":"ignored"}}`)
	if ex := body["execution"].(map[string]any); num(ex["versionNumber"]) != 2 || ex["statusDetails"].(map[string]any)["step"] != "start" {
		t.Errorf("second start-next changed the execution: %v", ex)
	}
	for _, tc := range []struct {
		payload string
		code    string
		version int64
	}{
		{`{"status":"IN_PROGRESS","expectedVersion":2}`, "", 3},
		{`{"status":"IN_PROGRESS","expectedVersion":"3"}`, "", 4},
		{`{"status":"IN_PROGRESS","expectedVersion":3}`, CodeVersionMismatch, 4},
		{`{"status":"IN_PROGRESS","expectedVersion":"2"}`, CodeVersionMismatch, 4},
		{`{"status":"IN_PROGRESS","statusDetails":{"step":"verify"},"includeJobExecutionState":true,"includeJobDocument":true}`, "", 5},
	} {
		a, _ := e.request(t, "box-1", "job1/update", tc.payload)
		if got, _ := a.Payload["code"].(string); got != tc.code {
			t.Fatalf("%s: code %q, want %q", tc.payload, got, tc.code)
		}
		if tc.code == CodeVersionMismatch {
			if st := a.Payload["executionState"].(map[string]any); num(st["versionNumber"]) != tc.version {
				t.Errorf("%s: mismatch state %v", tc.payload, st)
			}
		}
		ex, _ := e.svc.DescribeJobExecution("box-1", "job1", 0)
		if ex.VersionNumber != tc.version {
			t.Errorf("%s: version %d, want %d", tc.payload, ex.VersionNumber, tc.version)
		}
	}
	a, _ := e.request(t, "box-1", "job1/update", `{"status":"IN_PROGRESS"}`)
	if diff := cmp.Diff(map[string]any{"timestamp": float64(t0.Unix())}, a.Payload); diff != "" {
		t.Errorf("minimal update answer (-want +got):\n%s", diff)
	}
	stored, _ := e.svc.DescribeJobExecution("box-1", "job1", 0)
	if diff := cmp.Diff(map[string]string{"step": "verify"}, stored.StatusDetails); diff != "" {
		t.Errorf("statusDetails kept when absent (-want +got):\n%s", diff)
	}
	// Describe: document by default, not with includeJobDocument false.
	body, _ = e.accepted(t, "box-1", "job1/get", `{"includeJobDocument":false}`)
	if _, ok := body["execution"].(map[string]any)["jobDocument"]; ok {
		t.Errorf("describe with includeJobDocument false: %v", body)
	}
	e.accepted(t, "box-1", "job1/update", `{"status":"SUCCEEDED"}`)
	if code, _ := e.rejected(t, "box-1", "job1/get", `{}`); code != CodeTerminalStateReached {
		t.Errorf("describe of a SUCCEEDED execution: %s", code)
	}
	if j, _ := e.svc.DescribeJob("job1"); j.Status != JobCompleted || !j.CompletedAt.Equal(t0) {
		t.Errorf("job after its only execution succeeded: %s %v", j.Status, j.CompletedAt)
	}
}

func TestTimeouts(t *testing.T) {
	e := newEnv(t, "box-1", "box-2")
	if _, err := e.svc.CreateJob(CreateJobInput{JobID: "job1", Targets: []string{thingARN("box-1"), thingARN("box-2")},
		Document: `{}`, TimeoutConfig: &TimeoutConfig{InProgressTimeoutInMinutes: 30}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel()
	done := make(chan error)
	go func() { done <- e.svc.Run(ctx) }()
	tick := func() { e.ticks <- e.clock.Now() }   // returns once Run has taken it...
	settle := func() { e.ticks <- e.clock.Now() } // ...and the previous check has finished
	e.accepted(t, "box-1", "start-next", `{"stepTimeoutInMinutes":10}`)
	e.accepted(t, "box-2", "start-next", `{}`)
	if body, _ := e.accepted(t, "box-1", "job1/get", `{}`); num(body["execution"].(map[string]any)["approximateSecondsBeforeTimedOut"]) != 600 {
		t.Errorf("seconds before timeout: %v", body)
	}
	e.clock.Add(9 * time.Minute)
	// -1 discards the step timer; a new one replaces it, capped by the in-progress timer.
	e.accepted(t, "box-1", "job1/update", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":-1}`)
	e.clock.Add(2 * time.Minute)
	tick()
	settle()
	if ex, _ := e.svc.DescribeJobExecution("box-1", "job1", 0); ex.Status != StatusInProgress {
		t.Fatalf("discarded step timer fired: %s", ex.Status)
	}
	e.accepted(t, "box-1", "job1/update", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":60}`)
	if ex, _ := e.svc.DescribeJobExecution("box-1", "job1", 0); !ex.StepDeadline.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("step deadline %v, want capped at the in-progress deadline %v", ex.StepDeadline, t0.Add(30*time.Minute))
	}
	e.take()
	e.clock.Add(19 * time.Minute) // t0+30m: both in-progress timers expire
	tick()
	settle()
	for _, th := range []string{"box-1", "box-2"} {
		if ex, _ := e.svc.DescribeJobExecution(th, "job1", 0); ex.Status != StatusTimedOut {
			t.Errorf("%s: %s, want TIMED_OUT", th, ex.Status)
		}
	}
	want := []string{"$aws/things/box-1/jobs/notify", "$aws/things/box-1/jobs/notify-next",
		"$aws/things/box-2/jobs/notify", "$aws/things/box-2/jobs/notify-next"}
	if diff := cmp.Diff(want, topics(e.take())); diff != "" {
		t.Errorf("timeout notifications (-want +got):\n%s", diff)
	}
	if code, _ := e.rejected(t, "box-1", "job1/update", `{"status":"SUCCEEDED"}`); code != CodeInvalidStateTransition {
		t.Errorf("update after TIMED_OUT: %s", code)
	}
	if j, _ := e.svc.DescribeJob("job1"); j.Status != JobCompleted || j.Process[StatusTimedOut] != 2 {
		t.Errorf("job %s %v", j.Status, j.Process)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestStepTimeoutWithoutJobTimer(t *testing.T) {
	e := newEnv(t, "box-1")
	e.createJob(t, "job1", `{}`, "box-1")
	e.accepted(t, "box-1", "job1/update", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":5}`)
	e.clock.Add(5*time.Minute - time.Second)
	if err := e.svc.CheckTimeouts(); err != nil {
		t.Fatal(err)
	}
	if ex, _ := e.svc.DescribeJobExecution("box-1", "job1", 0); ex.Status != StatusInProgress {
		t.Fatalf("before the step deadline: %s", ex.Status)
	}
	e.clock.Add(time.Second)
	if err := e.svc.CheckTimeouts(); err != nil {
		t.Fatal(err)
	}
	if ex, _ := e.svc.DescribeJobExecution("box-1", "job1", 0); ex.Status != StatusTimedOut {
		t.Fatalf("at the step deadline: %s", ex.Status)
	}
	// What iotsim does to an execution by itself is logged.
	if l := e.logs.String(); !strings.Contains(l, `msg="job execution timed out" thing=box-1 job=job1 timer=step`) {
		t.Errorf("the timeout was not logged:\n%s", l)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, "box-1", "box-2")
	if _, err := e.svc.CreateJob(CreateJobInput{JobID: "job1", Targets: []string{thingARN("box-1"), thingARN("box-2")}, Document: `{}`}); err != nil {
		t.Fatal(err)
	}
	e.accepted(t, "box-1", "start-next", `{}`)
	e.take()
	j, err := e.svc.CancelJob("job1", false, "OLD_FIRMWARE", "superseded")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != JobCanceled || j.ForceCanceled || j.Process[StatusInProgress] != 1 || j.Process[StatusCanceled] != 1 {
		t.Errorf("after cancel: %s force=%v %v", j.Status, j.ForceCanceled, j.Process)
	}
	if diff := cmp.Diff([]string{"$aws/things/box-2/jobs/notify", "$aws/things/box-2/jobs/notify-next"}, topics(e.take())); diff != "" {
		t.Errorf("cancel notifications (-want +got):\n%s", diff)
	}
	if l := e.logs.String(); !strings.Contains(l, `msg="job execution canceled" thing=box-2 job=job1 was=QUEUED force=false reason_code=OLD_FIRMWARE`) ||
		strings.Contains(l, "thing=box-1") {
		t.Errorf("cancel log:\n%s", l)
	}
	e.accepted(t, "box-1", "job1/update", `{"status":"IN_PROGRESS"}`) // not forced: the device carries on
	j, err = e.svc.CancelJob("job1", true, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ex, _ := e.svc.DescribeJobExecution("box-1", "job1", 0)
	if !j.ForceCanceled || ex.Status != StatusCanceled || !ex.ForceCanceled || j.ReasonCode != "OLD_FIRMWARE" {
		t.Errorf("forced: job %+v, execution %+v", j, ex)
	}
	if diff := cmp.Diff([]string{"$aws/things/box-1/jobs/notify", "$aws/things/box-1/jobs/notify-next"}, topics(e.take())); diff != "" {
		t.Errorf("forced cancel notifications (-want +got):\n%s", diff)
	}
	if l := e.logs.String(); !strings.Contains(l, `msg="job execution canceled" thing=box-1 job=job1 was=IN_PROGRESS force=true`) {
		t.Errorf("forced cancel log:\n%s", l)
	}
	if code, _ := e.rejected(t, "box-1", "job1/update", `{"status":"SUCCEEDED"}`); code != CodeInvalidStateTransition {
		t.Errorf("update after a forced cancel: %s", code)
	}
	if _, err := e.svc.CancelJob("nojob", false, "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel unknown: %v", err)
	}
	e.createJob(t, "done", `{}`, "box-1")
	e.accepted(t, "box-1", "done/update", `{"status":"SUCCEEDED"}`)
	if _, err := e.svc.CancelJob("done", false, "", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("cancel a completed job: %v", err)
	}
}

func TestThingGroupTargetsAndRestart(t *testing.T) {
	e := newEnv(t, "box-1", "box-2", "box-3")
	if _, err := e.reg.CreateThingGroup("fleet", nil); err != nil {
		t.Fatal(err)
	}
	for _, th := range []string{"box-1", "box-2"} {
		if err := e.reg.AddThingToThingGroup("fleet", th); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.svc.CreateJob(CreateJobInput{JobID: "fleet-job", Document: `{"x":1}`,
		Targets: []string{"arn:aws:iot:us-east-1:123456789012:thinggroup/fleet", thingARN("box-3"), thingARN("box-1")}})
	if err != nil {
		t.Fatal(err)
	}
	execs, err := e.svc.ListJobExecutionsForJob("fleet-job", "")
	if err != nil {
		t.Fatal(err)
	}
	var things []string
	for _, x := range execs {
		things = append(things, x.ThingName)
	}
	if diff := cmp.Diff([]string{"box-1", "box-2", "box-3"}, things); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
	e.accepted(t, "box-2", "start-next", `{"statusDetails":{"k":"v"},"stepTimeoutInMinutes":3}`)

	// A restart keeps jobs, executions and timers.
	svc2 := e.open(t)
	ex, err := svc2.DescribeJobExecution("box-2", "fleet-job", 0)
	if err != nil || ex.Status != StatusInProgress || ex.VersionNumber != 2 || ex.StatusDetails["k"] != "v" {
		t.Fatalf("after restart: %+v %v", ex, err)
	}
	if got := svc2.ListJobExecutionsForThing("box-3", StatusQueued, ""); len(got) != 1 {
		t.Errorf("box-3 queued after restart: %v", got)
	}
	e.clock.Add(3 * time.Minute)
	if err := svc2.CheckTimeouts(); err != nil {
		t.Fatal(err)
	}
	if ex, _ := svc2.DescribeJobExecution("box-2", "fleet-job", 0); ex.Status != StatusTimedOut {
		t.Errorf("step timer after restart: %s", ex.Status)
	}
	if _, err := svc2.CreateJob(CreateJobInput{JobID: "fleet-job", Targets: []string{thingARN("box-1")}, Document: `{}`}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate id after restart: %v", err)
	}
	if j, _ := svc2.CreateJob(CreateJobInput{JobID: "later", Targets: []string{thingARN("box-1")}, Document: `{}`}); j.Seq <= 1 {
		t.Errorf("sequence restarted: %d", j.Seq)
	}
}

func TestCreateJobValidation(t *testing.T) {
	e := newEnv(t, "box-1")
	if _, err := e.files.Put("docs", "job.json", "", strings.NewReader(`{"operation":"from-s3"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.files.Put("docs", "bad.json", "", strings.NewReader(`not json`)); err != nil {
		t.Fatal(err)
	}
	target := []string{thingARN("box-1")}
	ph := `{"url":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/fwb/a.bin}"}`
	tests := []struct {
		name string
		in   CreateJobInput
		want error
	}{
		{"ok", CreateJobInput{JobID: "ok", Targets: target, Document: `{}`}, nil},
		{"from documentSource", CreateJobInput{JobID: "src", Targets: target, DocumentSource: "https://s3.amazonaws.com/docs/job.json"}, nil},
		{"placeholder with config", CreateJobInput{JobID: "ph", Targets: target, Document: ph, PresignedURLConfig: &PresignedURLConfig{ExpiresInSec: 60}}, nil},
		{"bad id", CreateJobInput{JobID: "a.b", Targets: target, Document: `{}`}, ErrInvalid},
		{"no targets", CreateJobInput{JobID: "x", Document: `{}`}, ErrInvalid},
		{"unknown thing", CreateJobInput{JobID: "x", Targets: []string{thingARN("nope")}, Document: `{}`}, ErrNotFound},
		{"unknown group", CreateJobInput{JobID: "x", Targets: []string{"arn:aws:iot:us-east-1:123456789012:thinggroup/nope"}, Document: `{}`}, ErrNotFound},
		{"other account", CreateJobInput{JobID: "x", Targets: []string{"arn:aws:iot:us-east-1:999999999999:thing/box-1"}, Document: `{}`}, ErrNotFound},
		{"not an ARN", CreateJobInput{JobID: "x", Targets: []string{"box-1"}, Document: `{}`}, ErrInvalid},
		{"both documents", CreateJobInput{JobID: "x", Targets: target, Document: `{}`, DocumentSource: "s3://docs/job.json"}, ErrInvalid},
		{"no document", CreateJobInput{JobID: "x", Targets: target}, ErrInvalid},
		{"document not JSON", CreateJobInput{JobID: "x", Targets: target, Document: `{`}, ErrInvalid},
		{"document not an object", CreateJobInput{JobID: "x", Targets: target, Document: `[1]`}, ErrInvalid},
		{"document too large", CreateJobInput{JobID: "x", Targets: target, Document: `{"a":"` + strings.Repeat("x", MaxDocumentBytes) + `"}`}, ErrInvalid},
		{"missing documentSource", CreateJobInput{JobID: "x", Targets: target, DocumentSource: "s3://docs/none.json"}, ErrInvalid},
		{"documentSource not JSON", CreateJobInput{JobID: "x", Targets: target, DocumentSource: "s3://docs/bad.json"}, ErrInvalid},
		{"placeholder without config", CreateJobInput{JobID: "x", Targets: target, Document: ph}, ErrInvalid},
		{"placeholder not S3", CreateJobInput{JobID: "x", Targets: target, Document: `{"u":"${aws:iot:s3-presigned-url:https://example.com/a}"}`, PresignedURLConfig: &PresignedURLConfig{}}, ErrInvalid},
		{"expiry too short", CreateJobInput{JobID: "x", Targets: target, Document: `{}`, PresignedURLConfig: &PresignedURLConfig{ExpiresInSec: 59}}, ErrInvalid},
		{"expiry too long", CreateJobInput{JobID: "x", Targets: target, Document: `{}`, PresignedURLConfig: &PresignedURLConfig{ExpiresInSec: 3601}}, ErrInvalid},
		{"timeout too long", CreateJobInput{JobID: "x", Targets: target, Document: `{}`, TimeoutConfig: &TimeoutConfig{InProgressTimeoutInMinutes: 10081}}, ErrInvalid},
		{"bad target selection", CreateJobInput{JobID: "x", Targets: target, Document: `{}`, TargetSelection: "SOMETIMES"}, ErrInvalid},
		{"duplicate", CreateJobInput{JobID: "ok", Targets: target, Document: `{}`}, ErrExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.CreateJob(tc.in)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			var je *Error
			if err != nil && errors.As(err, &je) && strings.HasPrefix(je.Msg, "jobs:") {
				t.Errorf("message has the package prefix: %q", je.Msg)
			}
		})
	}
	if doc, _ := e.svc.GetJobDocument("src"); doc != `{"operation":"from-s3"}` {
		t.Errorf("documentSource resolved to %q", doc)
	}
	if doc, _ := e.svc.GetJobDocument("ph"); doc != ph {
		t.Errorf("GetJobDocument substituted: %q", doc)
	}
}

func TestPresignedPlaceholders(t *testing.T) {
	e := newEnv(t, "box-1")
	doc := `{"files":[{"url":"${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/fwb/agent.bin}"},` +
		`{"url":"${aws:iot:s3-presigned-url:https:\/\/fwb.s3.amazonaws.com\/dir\/b.bin}"}]}`
	if _, err := e.svc.CreateJob(CreateJobInput{JobID: "ota", Targets: []string{thingARN("box-1")}, Document: doc,
		PresignedURLConfig: &PresignedURLConfig{RoleARN: "arn:aws:iam::123456789012:role/ota", ExpiresInSec: 120}}); err != nil {
		t.Fatal(err)
	}
	msgs := e.take()
	urls := func(ex map[string]any) []string {
		var out []string
		for _, f := range ex["jobDocument"].(map[string]any)["files"].([]any) {
			out = append(out, f.(map[string]any)["url"].(string))
		}
		return out
	}
	check := func(where string, got []string) {
		t.Helper()
		if len(got) != 2 || !strings.HasPrefix(got[0], "http://127.0.0.1:1/s3/fwb/agent.bin?") ||
			!strings.HasPrefix(got[1], "http://127.0.0.1:1/s3/fwb/dir/b.bin?") || !strings.Contains(got[0], "X-Amz-Expires=120") {
			t.Errorf("%s: urls %q", where, got)
		}
	}
	check("notify-next", urls(msgs[1].Payload["execution"].(map[string]any)))
	body, _ := e.accepted(t, "box-1", "start-next", `{}`)
	first := urls(body["execution"].(map[string]any))
	check("start-next", first)
	e.clock.Add(time.Second)
	body, _ = e.accepted(t, "box-1", "ota/get", `{}`)
	again := urls(body["execution"].(map[string]any))
	check("get", again)
	if first[0] == again[0] {
		t.Errorf("a later fetch got the same URL: %s", again[0])
	}
	body, _ = e.accepted(t, "box-1", "ota/update", `{"status":"IN_PROGRESS","includeJobDocument":true}`)
	check("update", urls(body))
	if got, _ := e.svc.GetJobDocument("ota"); got != doc {
		t.Errorf("control plane document changed: %s", got)
	}
}

func TestListings(t *testing.T) {
	e := newEnv(t, "box-1", "box-2")
	e.createJob(t, "j1", `{}`, "box-1", "box-2")
	e.createJob(t, "j2", `{}`, "box-1")
	e.accepted(t, "box-1", "j1/update", `{"status":"SUCCEEDED"}`)
	var got []string
	for _, x := range e.svc.ListJobExecutionsForThing("box-1", "", "") {
		got = append(got, x.JobID+":"+x.Status)
	}
	if diff := cmp.Diff([]string{"j1:SUCCEEDED", "j2:QUEUED"}, got); diff != "" {
		t.Errorf("for thing (-want +got):\n%s", diff)
	}
	if x := e.svc.ListJobExecutionsForThing("box-1", StatusQueued, ""); len(x) != 1 || x[0].JobID != "j2" {
		t.Errorf("status filter: %v", x)
	}
	if x := e.svc.ListJobExecutionsForThing("box-1", "", "j1"); len(x) != 1 {
		t.Errorf("job filter: %v", x)
	}
	if x, _ := e.svc.ListJobExecutionsForJob("j1", StatusQueued); len(x) != 1 || x[0].ThingName != "box-2" {
		t.Errorf("for job, queued: %v", x)
	}
	if _, err := e.svc.ListJobExecutionsForJob("nope", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	if js := e.svc.ListJobs(""); len(js) != 2 || js[0].JobID != "j1" {
		t.Errorf("ListJobs: %v", js)
	}
}

// TestStatusDetailsValues: AWS stores command output with newlines and
// tabs (the AWS IoT Device Client sends its stdout and stderr so); values
// stay bounded at 1024 characters, and other control characters are
// refused with a message naming them.
func TestStatusDetailsValues(t *testing.T) {
	e := newEnv(t, "box-1")
	e.createJob(t, "job1", `{"operation":"install"}`, "box-1")
	e.accepted(t, "box-1", "start-next", `{}`)
	for _, tc := range []struct {
		name, value string
		refused     string // part of the rejection's message; "" means stored
	}{
		{"stdout with a newline", "Hello\n", ""},
		{"tabs and CRLF", "a\tb\r\nc", ""},
		{"1024 characters with newlines", strings.Repeat("é\n", 512), ""},
		{"1025 characters", strings.Repeat("x", 1024) + "\n", "must be 1-1024 characters, not 1025"},
		{"escape sequence", "\x1b[31mred", "U+001B"},
		{"NUL", "a\x00b", "U+0000"},
		{"format character", "a\u200bb", "U+200B"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(map[string]any{"status": "IN_PROGRESS", "statusDetails": map[string]string{"stdout": tc.value}})
			a, _ := e.request(t, "box-1", "job1/update", string(b))
			if tc.refused == "" {
				if code, _ := a.Payload["code"].(string); code != "" {
					t.Fatalf("refused: %v", a.Payload)
				}
				ex, err := e.svc.DescribeJobExecution("box-1", "job1", 0)
				if err != nil || ex.StatusDetails["stdout"] != tc.value {
					t.Fatalf("stored %q, %v; want %q", ex.StatusDetails["stdout"], err, tc.value)
				}
				return
			}
			msg, _ := a.Payload["message"].(string)
			if a.Payload["code"] != CodeInvalidRequest || !strings.Contains(msg, "statusDetails.stdout") || !strings.Contains(msg, tc.refused) {
				t.Errorf("answer %v, want InvalidRequest naming statusDetails.stdout and %q", a.Payload, tc.refused)
			}
		})
	}
}

// TestMalformedPlaceholder: a placeholder that does not end inside its JSON
// string (FuzzDeviceDocument found one that ran on to the document's
// closing brace) is refused at CreateJob with a message naming it; the
// thing's next job runs normally.
func TestMalformedPlaceholder(t *testing.T) {
	e := newEnv(t, "box-1")
	cfg := &PresignedURLConfig{RoleARN: "arn:aws:iam::123456789012:role/ota"}
	for _, doc := range []string{
		`{"url":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/fwb/k"}`,
		`{"a":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/k","b":"}"}`,
		`{"url":"${aws:iot:s3-presigned-url:}"}`,
	} {
		_, err := e.svc.CreateJob(CreateJobInput{JobID: "bad", Targets: []string{thingARN("box-1")}, Document: doc, PresignedURLConfig: cfg})
		var je *Error
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrBadPlaceholder) || !errors.As(err, &je) ||
			!strings.Contains(je.Msg, "${aws:iot:s3-presigned-url:") {
			t.Errorf("CreateJob(%s) = %v, want ErrInvalid naming the placeholder", doc, err)
		}
	}
	if _, err := e.svc.DescribeJob("bad"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused job was stored: %v", err)
	}
	// Placeholders are substituted in string values only, escapes
	// included; keys and other strings stay as they were.
	doc := `{"u":"\u0024{aws:iot:s3-presigned-url:s3://fwb/k}?x=1","${aws:iot:s3-presigned-url:s3://fwb/key}":"${literal}"}`
	if _, err := e.svc.CreateJob(CreateJobInput{JobID: "ok", Targets: []string{thingARN("box-1")}, Document: doc, PresignedURLConfig: cfg}); err != nil {
		t.Fatal(err)
	}
	body, _ := e.accepted(t, "box-1", "start-next", `{}`)
	jd := body["execution"].(map[string]any)["jobDocument"].(map[string]any)
	if u, _ := jd["u"].(string); !strings.HasPrefix(u, "http://127.0.0.1:1/s3/fwb/k?") || !strings.HasSuffix(u, "?x=1") || strings.Contains(u, "${") {
		t.Errorf("substituted u = %q", u)
	}
	if jd["${aws:iot:s3-presigned-url:s3://fwb/key}"] != "${literal}" {
		t.Errorf("a key or a plain string changed: %v", jd)
	}
}

// TestStartNextNeverStartsSilently: a stored job whose document cannot be
// sent (an older iotsim let a malformed placeholder through) gets an
// InternalError answer to start-next, is logged, and stays QUEUED; it
// never goes IN_PROGRESS with no answer.
func TestStartNextNeverStartsSilently(t *testing.T) {
	e := newEnv(t, "box-1")
	e.createJob(t, "old", `{"url":"placeholder"}`, "box-1")
	j, err := e.svc.DescribeJob("old")
	if err != nil {
		t.Fatal(err)
	}
	j.Document = `{"url":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/fwb/k"}`
	j.PresignedURLConfig = &PresignedURLConfig{ExpiresInSec: 60}
	if err := e.db.PutJSON(bucketJobs, j.JobID, j); err != nil {
		t.Fatal(err)
	}
	e.svc = e.open(t) // a restart over the older data dir
	if l := e.logs.String(); !strings.Contains(l, "job=old") || !strings.Contains(l, "cancel or delete it") {
		t.Errorf("loading the job did not warn:\n%s", l)
	}
	e.take()
	code, body := e.rejected(t, "box-1", "start-next", `{"clientToken":"c-1"}`)
	if code != CodeInternalError || body["clientToken"] != "c-1" {
		t.Errorf("start-next answered %v, want InternalError with the client token", body)
	}
	if ex, _ := e.svc.DescribeJobExecution("box-1", "old", 0); ex.Status != StatusQueued || ex.VersionNumber != 1 {
		t.Errorf("execution %s v%d, want QUEUED v1", ex.Status, ex.VersionNumber)
	}
	if l := e.logs.String(); !strings.Contains(l, `msg="jobs request" thing=box-1 op=StartNextPendingJobExecution`) {
		t.Errorf("the failed start-next was not logged:\n%s", l)
	}
	// An update asking for the document is refused whole, not applied.
	if code, _ := e.rejected(t, "box-1", "old/update", `{"status":"IN_PROGRESS","includeJobDocument":true}`); code != CodeInternalError {
		t.Errorf("update with the document: %s, want InternalError", code)
	}
	if ex, _ := e.svc.DescribeJobExecution("box-1", "old", 0); ex.Status != StatusQueued || ex.VersionNumber != 1 {
		t.Errorf("after a refused update: %s v%d, want QUEUED v1", ex.Status, ex.VersionNumber)
	}
}
