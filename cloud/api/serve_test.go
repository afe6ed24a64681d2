package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestErrorFormat checks the REST error contract on one error of each kind.
func TestErrorFormat(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(t, "GET", "/things/ghost/shadow", nil)
	if r.Status != 404 || r.Header.Get("x-amzn-ErrorType") != "ResourceNotFoundException" {
		t.Fatalf("got %d %q", r.Status, r.Header.Get("x-amzn-ErrorType"))
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 1 || body["message"] != "No shadow exists with name: 'ghost'" {
		t.Errorf("body %s, want only a message", r.Body)
	}
	id := r.Header.Get("x-amzn-RequestId")
	if len(id) != 36 || strings.Count(id, "-") != 4 {
		t.Errorf("x-amzn-RequestId %q is not a UUID", id)
	}
	if id2 := e.do(t, "GET", "/endpoint", nil).Header.Get("x-amzn-RequestId"); id2 == id {
		t.Errorf("request id %q reused", id)
	}
}

func TestEpochJSON(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want string
	}{{1541022751983, "1541022751.983"}, {1541022751000, "1541022751"}, {1541022751050, "1541022751.050"}, {-1500, "-1.500"}} {
		b, err := json.Marshal(epoch(time.UnixMilli(tc.ms)))
		if err != nil || string(b) != tc.want {
			t.Errorf("epoch(%d ms) = %s, %v; want %s", tc.ms, b, err, tc.want)
		}
	}
}

// FuzzServeHTTP sends arbitrary requests through the whole server: it must
// never panic, and every non-200 answer must be a well-formed REST error.
func FuzzServeHTTP(f *testing.F) {
	seeds := []struct{ method, target, body, auth string }{
		{"GET", "/things/lamp/shadow?name=cfg", "", ""},
		{"POST", "/things/lamp/shadow", `{"state":{"desired":{"a":1}}}`, ""},
		{"POST", "/topics/a%2Fb?qos=1&retain=true", "x", ""},
		{"GET", "/things?maxResults=1&nextToken=bzox", "", ""},
		{"PUT", "/things/lamp/principals", "", "AWS4-HMAC-SHA256 Credential=a/20240601/us-east-1/iot/aws4_request, SignedHeaders=host, Signature=" + strings.Repeat("0", 64)},
		{"GET", "/api/things/shadow/ListNamedShadowsForThing/lamp?pageSize=1", "", ""},
		{"POST", "/keys-and-certificate?setAsActive=true", "", ""},
		{"PUT", "/certificates/" + strings.Repeat("a", 64) + "?newStatus=ACTIVE", "", ""},
		{"DELETE", "/things/lamp?expectedVersion=1", "", ""},
		{"PUT", "/things/lamp/jobs/j1/cancel?force=true", `{"expectedVersion":1,"statusDetails":{"a":"b\n"}}`, ""},
		{"DELETE", "/things/lamp/jobs/j1/executionNumber/x1?force=maybe", "", ""},
		{"DELETE", "/certificates/" + strings.Repeat("a", 64) + "?forceDelete=true", "", ""},
		{"PUT", "/thing-groups/removeThingFromThingGroup", `{"thingGroupArn":"arn:aws:iot:us-east-1:1:thinggroup/g","thingName":"lamp"}`, ""},
		{"DELETE", "/thing-groups/g?expectedVersion=1e3", "", ""},
		{"GET", "/security-profiles?maxResults=0&metricName=aws:num-messages-sent", "", ""},
		{"POST", "/security-profiles/p", `{"behaviors":[{"name":1}]}`, ""},
		{"GET", "/certificates-by-ca/" + strings.Repeat("A", 64) + "?isAscendingOrder=yes", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.body, s.auth)
	}
	e := newEnv(f, nil)
	if _, err := e.reg.CreateThing("lamp", "", nil); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, target, body, auth string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || method == "" || strings.ContainsAny(method, " \t\r\n") {
			return
		}
		req := &http.Request{Method: method, URL: u, RequestURI: target, Host: "sim", Header: http.Header{},
			Body: httptestNopCloser{bytes.NewReader([]byte(body))}, ContentLength: int64(len(body))}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code == 200 {
			return
		}
		var eb map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb["message"] == nil || eb["code"] != nil {
			t.Fatalf("%s %s: error body %q", method, target, rec.Body)
		}
		if rec.Header().Get("x-amzn-ErrorType") == "" || rec.Code < 400 {
			t.Fatalf("%s %s: status %d, type %q", method, target, rec.Code, rec.Header().Get("x-amzn-ErrorType"))
		}
	})
}

type httptestNopCloser struct{ *bytes.Reader }

func (httptestNopCloser) Close() error { return nil }

func BenchmarkGetThingShadow(b *testing.B) {
	e := newEnv(b, nil)
	if _, err := e.sh.Update("lamp", "", []byte(`{"state":{"reported":{"on":true,"t":21.5}}}`)); err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/things/lamp/shadow", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

func BenchmarkPublish(b *testing.B) {
	e := newEnv(b, func(o *Options) { o.Publish = func(string, []byte, byte, bool) error { return nil } })
	body := []byte(`{"t":21.5}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/topics/dev%2Flamp%2Ftelemetry?qos=1", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

func BenchmarkStrictVerify(b *testing.B) {
	creds := Credentials{AccessKeyID: "AKID", SecretAccessKey: "s"}
	e := newEnv(b, func(o *Options) {
		o.Credentials, o.NoAuth = &creds, false
		o.Publish = func(string, []byte, byte, bool) error { return nil }
	})
	body := []byte(`{"t":21.5}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/topics/dev%2Flamp?qos=1", bytes.NewReader(body))
		sign(req, body, creds, "us-east-1", "iotdata", testNow)
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body)
		}
	}
}

func ExampleClient() {
	srv := httptest.NewServer(New(Options{Endpoint: "sim.example", NoAuth: true}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	// No shadow service was given, so this fails with AWS's words.
	_, err := c.GetThingShadow(context.Background(), "lamp", "")
	fmt.Println(err)
	// Output: get shadow of lamp: InternalFailureException (HTTP 500): The shadow service is not available in this simulator
}
