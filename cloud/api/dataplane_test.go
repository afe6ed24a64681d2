package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/iotagent/iotagent/cloud/shadow"
)

// TestShadowLifecycle runs the data-plane shadow operations in order, each
// step checking the real outcome or the exact error.
func TestShadowLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	big := `{"state":{"desired":{"blob":"` + strings.Repeat("x", 9000) + `"}}}`
	type step struct {
		name           string
		method, target string
		body           string
		status         int
		code           string   // error code, for errors
		msg            string   // exact error message, if set
		want           []string // substrings of a 200 body
	}
	steps := []step{
		{name: "get missing classic", method: "GET", target: "/things/lamp/shadow",
			status: 404, code: "ResourceNotFoundException", msg: "No shadow exists with name: 'lamp'"},
		{name: "update classic", method: "POST", target: "/things/lamp/shadow",
			body: `{"state":{"desired":{"on":true}},"clientToken":"t1"}`, status: 200,
			want: []string{`"version":1`, `"clientToken":"t1"`, `"desired":{"on":true}`}},
		{name: "get classic", method: "GET", target: "/things/lamp/shadow", status: 200,
			want: []string{`"version":1`, `"delta":{"on":true}`}},
		{name: "bad JSON", method: "POST", target: "/things/lamp/shadow", body: `{"state":`,
			status: 400, code: "InvalidRequestException", msg: "Invalid JSON"},
		{name: "empty body", method: "POST", target: "/things/lamp/shadow", body: ``,
			status: 400, code: "InvalidRequestException"},
		{name: "missing state", method: "POST", target: "/things/lamp/shadow", body: `{"version":1}`,
			status: 400, code: "InvalidRequestException", msg: "Missing required node: state"},
		{name: "version conflict", method: "POST", target: "/things/lamp/shadow",
			body: `{"state":{"reported":{"on":true}},"version":7}`, status: 409, code: "ConflictException", msg: "Version conflict"},
		{name: "matching version", method: "POST", target: "/things/lamp/shadow",
			body: `{"state":{"reported":{"on":true}},"version":1}`, status: 200, want: []string{`"version":2`}},
		{name: "too large for a shadow", method: "POST", target: "/things/lamp/shadow", body: big,
			status: 413, code: "RequestEntityTooLargeException", msg: "The payload exceeds the maximum size allowed"},
		{name: "not UTF-8", method: "POST", target: "/things/lamp/shadow", body: "{\"state\":{\"desired\":{\"a\":\"\xff\"}}}",
			status: 415, code: "UnsupportedDocumentEncodingException"},
		{name: "bad thing name", method: "GET", target: "/things/bad%20name/shadow",
			status: 400, code: "InvalidRequestException"},
		{name: "thing name with escaped slash", method: "POST", target: "/things/a%2Fb/shadow", body: `{"state":{}}`,
			status: 400, code: "InvalidRequestException"},
		{name: "thing name too long", method: "GET", target: "/things/" + strings.Repeat("a", 129) + "/shadow",
			status: 400, code: "InvalidRequestException"},
		{name: "bad shadow name", method: "GET", target: "/things/lamp/shadow?name=a%2Fb",
			status: 400, code: "InvalidRequestException"},
		{name: "empty shadow name", method: "GET", target: "/things/lamp/shadow?name=",
			status: 400, code: "InvalidRequestException"},
		{name: "named missing", method: "GET", target: "/things/lamp/shadow?name=cfg",
			status: 404, code: "ResourceNotFoundException", msg: "No shadow exists with name: 'cfg'"},
		{name: "update named", method: "POST", target: "/things/lamp/shadow?name=cfg",
			body: `{"state":{"reported":{"mode":"eco"}}}`, status: 200, want: []string{`"version":1`, `"mode":"eco"`}},
		{name: "get named", method: "GET", target: "/things/lamp/shadow?name=cfg", status: 200,
			want: []string{`"reported":{"mode":"eco"}`}},
		{name: "delete classic", method: "DELETE", target: "/things/lamp/shadow", status: 200,
			want: []string{`"version":2`, `"timestamp":`}},
		{name: "classic gone", method: "GET", target: "/things/lamp/shadow",
			status: 404, code: "ResourceNotFoundException"},
		{name: "delete missing", method: "DELETE", target: "/things/lamp/shadow",
			status: 404, code: "ResourceNotFoundException", msg: "No shadow exists with name: 'lamp'"},
		{name: "named survives", method: "GET", target: "/things/lamp/shadow?name=cfg", status: 200,
			want: []string{`"mode":"eco"`}},
		{name: "PUT not allowed", method: "PUT", target: "/things/lamp/shadow",
			status: 405, code: "MethodNotAllowedException"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var body []byte
			if s.method == "POST" {
				body = []byte(s.body)
			}
			r := e.do(t, s.method, s.target, body)
			if s.code != "" {
				msg := e.wantError(t, r, s.status, s.code)
				if s.msg != "" && msg != s.msg {
					t.Errorf("message = %q, want %q", msg, s.msg)
				}
				return
			}
			if r.Status != s.status {
				t.Fatalf("status %d, want %d; body %s", r.Status, s.status, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if !json.Valid(r.Body) {
				t.Errorf("body %q is not JSON", r.Body)
			}
			for _, w := range s.want {
				if !strings.Contains(string(r.Body), w) {
					t.Errorf("body %s lacks %s", r.Body, w)
				}
			}
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(t, "POST", "/things/lamp/shadow", make([]byte, MaxBodyBytes+1))
	e.wantError(t, r, 413, "RequestEntityTooLargeException")
}

func TestListNamedShadowsPaging(t *testing.T) {
	e := newEnv(t, nil)
	want := []string{"a", "b", "c", "d", "e"}
	for _, n := range []string{"d", "b", "e", "a", "c"} {
		if _, err := e.sh.Update("dev1", n, []byte(`{"state":{"reported":{"x":1}}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.sh.Update("dev1", "", []byte(`{"state":{"reported":{"x":1}}}`)); err != nil {
		t.Fatal(err)
	}
	type out struct {
		Results   []string `json:"results"`
		NextToken string   `json:"nextToken"`
		Timestamp int64    `json:"timestamp"`
	}
	var got []string
	seen := map[string]bool{}
	tok := ""
	for range 10 {
		target := "/api/things/shadow/ListNamedShadowsForThing/dev1?pageSize=2"
		if tok != "" {
			target += "&nextToken=" + url.QueryEscape(tok)
		}
		var o out
		e.do(t, "GET", target, nil).json(t, &o)
		if o.Timestamp != testNow.Unix() {
			t.Errorf("timestamp = %d, want %d", o.Timestamp, testNow.Unix())
		}
		if len(o.Results) > 2 {
			t.Errorf("page of %d > pageSize 2", len(o.Results))
		}
		got = append(got, o.Results...)
		if o.NextToken == "" {
			break
		}
		if seen[o.NextToken] {
			t.Fatalf("token %q returned twice", o.NextToken)
		}
		seen[o.NextToken] = true
		tok = o.NextToken
	}
	if tok != "" && len(got) != len(want) {
		t.Fatalf("paging did not terminate")
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("named shadows (-want +got):\n%s", d)
	}

	t.Run("unknown thing is empty", func(t *testing.T) {
		var o out
		r := e.do(t, "GET", "/api/things/shadow/ListNamedShadowsForThing/nobody", nil)
		r.json(t, &o)
		if !strings.Contains(string(r.Body), `"results":[]`) || o.NextToken != "" {
			t.Errorf("body %s, want an empty results array and no token", r.Body)
		}
	})
	for _, tc := range []struct{ name, target string }{
		{"pageSize 0", "/api/things/shadow/ListNamedShadowsForThing/dev1?pageSize=0"},
		{"pageSize 101", "/api/things/shadow/ListNamedShadowsForThing/dev1?pageSize=101"},
		{"pageSize not a number", "/api/things/shadow/ListNamedShadowsForThing/dev1?pageSize=x"},
		{"bad token", "/api/things/shadow/ListNamedShadowsForThing/dev1?nextToken=%21%21"},
		{"bad thing", "/api/things/shadow/ListNamedShadowsForThing/a%20b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.wantError(t, e.do(t, "GET", tc.target, nil), 400, "InvalidRequestException")
		})
	}
}

func TestPublish(t *testing.T) {
	tests := []struct {
		name   string
		target string
		body   string
		want   *published // nil: an error is expected
		status int
		code   string
	}{
		{name: "escaped slashes", target: "/topics/dev%2Fa%2Ftelemetry?qos=1", body: `{"t":21}`,
			want: &published{Topic: "dev/a/telemetry", Payload: `{"t":21}`, QoS: 1}},
		{name: "raw slashes", target: "/topics/dev/a/telemetry", body: "x",
			want: &published{Topic: "dev/a/telemetry", Payload: "x"}},
		{name: "space and colon", target: "/topics/a%20b%3Ac", body: "x",
			want: &published{Topic: "a b:c", Payload: "x"}},
		{name: "retain", target: "/topics/state%2Flamp?retain=true&qos=0", body: "on",
			want: &published{Topic: "state/lamp", Payload: "on", Retain: true}},
		{name: "empty retained payload", target: "/topics/state%2Flamp?retain=true",
			want: &published{Topic: "state/lamp", Retain: true}},
		{name: "reserved topic", target: "/topics/%24aws%2Fthings%2Flamp%2Fshadow%2Fupdate", body: "{}",
			want: &published{Topic: "$aws/things/lamp/shadow/update", Payload: "{}"}},
		{name: "basic ingest prefix not counted", target: "/topics/%24aws%2Frules%2Fr%2Fa%2Fb%2Fc%2Fd%2Fe%2Ff%2Fg%2Fh", body: "x",
			want: &published{Topic: "$aws/rules/r/a/b/c/d/e/f/g/h", Payload: "x"}},
		{name: "basic ingest over the limit", target: "/topics/%24aws%2Frules%2Fr%2Fa%2Fb%2Fc%2Fd%2Fe%2Ff%2Fg%2Fh%2Fi", status: 400, code: "InvalidRequestException"},
		{name: "not UTF-8", target: "/topics/a%FF", status: 400, code: "InvalidRequestException"},
		{name: "NUL", target: "/topics/a%00", status: 400, code: "InvalidRequestException"},
		{name: "escaped plus", target: "/topics/a%2F%2B%2Fb", status: 400, code: "InvalidRequestException"},
		{name: "escaped hash", target: "/topics/a%2F%23", status: 400, code: "InvalidRequestException"},
		{name: "bad qos", target: "/topics/a?qos=2", status: 400, code: "InvalidRequestException"},
		{name: "qos not a number", target: "/topics/a?qos=one", status: 400, code: "InvalidRequestException"},
		{name: "bad retain", target: "/topics/a?retain=yes", status: 400, code: "InvalidRequestException"},
		{name: "retain on reserved", target: "/topics/%24aws%2Fx?retain=true", status: 400, code: "InvalidRequestException"},
		{name: "eight slashes", target: "/topics/a%2Fb%2Fc%2Fd%2Fe%2Ff%2Fg%2Fh%2Fi", status: 400, code: "InvalidRequestException"},
		{name: "too long", target: "/topics/" + strings.Repeat("t", 257), status: 400, code: "InvalidRequestException"},
		{name: "payload too large", target: "/topics/a", body: strings.Repeat("p", 128*1024+1), status: 413, code: "RequestEntityTooLargeException"},
		{name: "GET not allowed", target: "GET /topics/a", status: 405, code: "MethodNotAllowedException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			method, target := "POST", tc.target
			if m, rest, ok := strings.Cut(target, " "); ok {
				method, target = m, rest
			}
			r := e.do(t, method, target, []byte(tc.body))
			if tc.want == nil {
				e.wantError(t, r, tc.status, tc.code)
				if n := len(e.published()); n != 0 {
					t.Errorf("%d messages published on error", n)
				}
				return
			}
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if d := cmp.Diff([]published{*tc.want}, e.published()); d != "" {
				t.Errorf("published (-want +got):\n%s", d)
			}
		})
	}
	t.Run("publisher error", func(t *testing.T) {
		e := newEnv(t, func(o *Options) {
			o.Publish = func(string, []byte, byte, bool) error { return errors.New("broker down") }
		})
		msg := e.wantError(t, e.do(t, "POST", "/topics/a", []byte("x")), 500, "InternalFailureException")
		if strings.Contains(msg, "broker down") {
			t.Errorf("internal detail leaked: %q", msg)
		}
	})
}

func TestFromShadow(t *testing.T) {
	tests := []struct {
		code   int
		status int
		want   string
	}{
		{400, 400, "InvalidRequestException"},
		{401, 401, "UnauthorizedException"},
		{403, 401, "UnauthorizedException"},
		{404, 404, "ResourceNotFoundException"},
		{409, 409, "ConflictException"},
		{413, 413, "RequestEntityTooLargeException"},
		{415, 415, "UnsupportedDocumentEncodingException"},
		{429, 429, "ThrottlingException"},
		{500, 500, "InternalFailureException"},
		{503, 503, "ServiceUnavailableException"},
		{418, 500, "InternalFailureException"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			err := fromShadow(fmt.Errorf("wrapped: %w", &shadow.Error{Code: tc.code, Message: "m"}))
			var ae *apiError
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want an *apiError", err)
			}
			if d := cmp.Diff(apiError{tc.status, tc.want, "m"}, *ae, cmp.AllowUnexported(apiError{})); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	t.Run("not a shadow error", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Shadows = brokenShadows{o.Shadows} })
		msg := e.wantError(t, e.do(t, "GET", "/things/lamp/shadow", nil), http.StatusInternalServerError, "InternalFailureException")
		if strings.Contains(msg, errDisk.Error()) {
			t.Errorf("internal detail leaked: %q", msg)
		}
	})
}

func TestMissingServices(t *testing.T) {
	e := newEnv(t, func(o *Options) { *o = Options{NoAuth: true} })
	for _, target := range []string{"GET /things/lamp/shadow", "POST /topics/a", "GET /things", "POST /keys-and-certificate",
		"GET /api/things/shadow/ListNamedShadowsForThing/lamp"} {
		t.Run(target, func(t *testing.T) {
			m, p, _ := strings.Cut(target, " ")
			e.wantError(t, e.do(t, m, p, nil), 500, "InternalFailureException")
		})
	}
}
