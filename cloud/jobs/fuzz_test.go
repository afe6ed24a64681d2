package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/iotagent/iotagent/cloud/s3"
	"testing"
)

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{}`, ``, `{"clientToken":"t","status":"IN_PROGRESS","statusDetails":{"a":"b"},"expectedVersion":"3","executionNumber":1,` +
			`"includeJobExecutionState":true,"includeJobDocument":false,"stepTimeoutInMinutes":-1}`,
		`[1]`, `{"expectedVersion":1e3}`, `{"status":"SUCCEEDED","statusDetails":{"stdout":"Hello\n\tworld\r\n","stderr":"\u001b[0m"}}`, `{"statusDetails":null}`, "\xff",
	} {
		for _, op := range []string{OpGetPending, OpStartNext, OpDescribe, OpUpdate} {
			f.Add(op, s)
		}
	}
	f.Fuzz(func(t *testing.T, op, payload string) {
		req, err := ParseRequest(op, []byte(payload))
		if err != nil {
			switch err.Code {
			case CodeInvalidJSON, CodeInvalidRequest:
			default:
				t.Fatalf("code %s", err.Code)
			}
			return
		}
		if req.ClientToken != nil && (len(*req.ClientToken) > MaxClientToken || *req.ClientToken == "") {
			t.Fatalf("token %q", *req.ClientToken)
		}
		for k, v := range req.StatusDetails {
			if !validDetailKey(k) || checkDetailValue(v) != "" {
				t.Fatalf("statusDetails %q=%q", k, v)
			}
		}
		if op == OpUpdate && (req.Status == "" || terminal(req.Status) && req.Status != StatusSucceeded && req.Status != StatusFailed && req.Status != StatusRejected) {
			t.Fatalf("status %q", req.Status)
		}
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"$aws/things/t/jobs/get", "$aws/things/t/jobs/$next/get", "$aws/things/t/jobs/j/update",
		"$aws/things/t/jobs/j/update/accepted", "$aws/things//jobs/get", "$aws/things/a/b/jobs/get"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		r, ok := ParseTopic(topic)
		if !ok {
			return
		}
		if r.Op != "" && (!validThingName(r.Thing) || r.Ignore) {
			t.Fatalf("%q -> %+v", topic, r)
		}
		if r.Op == OpUpdate && !ValidJobID(r.JobID) {
			t.Fatalf("%q -> update of %q", topic, r.JobID)
		}
	})
}

// FuzzDeviceDocument checks that a valid document either has a malformed
// placeholder, which CreateJob refuses, or stays valid JSON after its
// placeholders are substituted, with every other string as it was.
func FuzzDeviceDocument(f *testing.F) {
	f.Add(`{"u":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/fwb/a}"}`)
	f.Add(`{"u":["${aws:iot:s3-presigned-url:s3://fwb/a b}","x"]}`)
	f.Add(`{"u":"${aws:iot:s3-presigned-url:https:\/\/fwb.s3.amazonaws.com\/k}"}`)
	f.Add(`{"u":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/fwb/k"}`) // unterminated: ran past the string's end
	f.Add(`{"a":"${aws:iot:s3-presigned-url:http://H/s3/b/k","b":"}"}`)
	f.Add(`{"u":"\u0024{aws:iot:s3-presigned-url:s3://fwb/k}","${aws:iot:s3-presigned-url:s3://fwb/key}":1}`)
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, doc string) {
		if CheckDocument(doc) != nil {
			return
		}
		urls, err := Placeholders(doc)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Placeholders(%q): %v is not ErrInvalid", doc, err)
			}
			return // CreateJob refuses it
		}
		for _, u := range urls {
			if _, _, err := parseObjectURLForTest(u); err != nil {
				return // CreateJob would reject it
			}
		}
		out, err := e.svc.deviceDocument(&Job{Document: doc, PresignedURLConfig: &PresignedURLConfig{ExpiresInSec: 60}})
		if err != nil {
			t.Fatalf("substitute %q: %v", doc, err)
		}
		if err := CheckDocument(string(out)); err != nil {
			t.Fatalf("substituted %q -> %q: %v", doc, out, err)
		}
		var before, after any
		_ = json.Unmarshal([]byte(doc), &before)
		_ = json.Unmarshal(out, &after)
		if n := countStrings(before, false) - countStrings(after, false); n != 0 {
			t.Fatalf("substituted %q -> %q: %d strings changed shape", doc, out, n)
		}
		if len(urls) == 0 && countStrings(before, true) != countStrings(after, true) {
			t.Fatalf("no placeholders, yet %q -> %q", doc, out)
		}
	})
}

// countStrings counts the string values of v; with exact, it adds a hash
// of their texts, so that a changed string shows.
func countStrings(v any, exact bool) int {
	switch x := v.(type) {
	case string:
		if exact {
			h := 1
			for _, c := range x {
				h = h*31 + int(c)
			}
			return h
		}
		return 1
	case []any:
		n := 0
		for _, y := range x {
			n += countStrings(y, exact)
		}
		return n
	case map[string]any:
		n := 0
		for _, y := range x {
			n += countStrings(y, exact)
		}
		return n
	}
	return 0
}

// BenchmarkDispatch creates a job for N things (one thing group) and
// reports jobs dispatched, i.e. executions queued and notified, per second.
func BenchmarkDispatch(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			e := newEnv(b)
			if _, err := e.reg.CreateThingGroup("fleet", nil); err != nil {
				b.Fatal(err)
			}
			for i := range n {
				th := fmt.Sprintf("box-%d", i)
				if _, err := e.reg.CreateThing(th, "", nil); err != nil {
					b.Fatal(err)
				}
				if err := e.reg.AddThingToThingGroup("fleet", th); err != nil {
					b.Fatal(err)
				}
			}
			group := []string{"arn:aws:iot:us-east-1:123456789012:thinggroup/fleet"}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := e.svc.CreateJob(CreateJobInput{JobID: fmt.Sprintf("job-%d", i), Targets: group, Document: `{"operation":"install"}`}); err != nil {
					b.Fatal(err)
				}
				e.take()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "executions/s")
		})
	}
}

func parseObjectURLForTest(u string) (string, string, error) { return s3.ParseObjectURL(u) }
