package api

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		service, method, path string
		op                    string
		labels                map[string]string
		code                  string // error code when no route
	}{
		{"", "GET", "/things/lamp/shadow", "GetThingShadow", map[string]string{"thingName": "lamp"}, ""},
		{"iotdata", "POST", "/things/lamp/shadow", "UpdateThingShadow", map[string]string{"thingName": "lamp"}, ""},
		{"iotdevicegateway", "DELETE", "/things/lamp/shadow", "DeleteThingShadow", map[string]string{"thingName": "lamp"}, ""},
		{"", "GET", "/api/things/shadow/ListNamedShadowsForThing/lamp", "ListNamedShadowsForThing", map[string]string{"thingName": "lamp"}, ""},
		{"", "POST", "/topics/a%2Fb%2Bc%23", "Publish", map[string]string{"topic": "a/b+c#"}, ""},
		{"", "POST", "/topics/a/b%2Fc/d", "Publish", map[string]string{"topic": "a/b/c/d"}, ""},
		{"", "POST", "/topics/%24aws%2Fthings", "Publish", map[string]string{"topic": "$aws/things"}, ""},
		{"iot", "GET", "/things", "ListThings", nil, ""},
		{"iot", "GET", "/things/a%3Ab", "DescribeThing", map[string]string{"thingName": "a:b"}, ""},
		{"", "POST", "/things/lamp", "CreateThing", map[string]string{"thingName": "lamp"}, ""},
		{"", "PUT", "/things/lamp/principals", "AttachThingPrincipal", map[string]string{"thingName": "lamp"}, ""},
		{"", "DELETE", "/things/lamp/principals", "DetachThingPrincipal", map[string]string{"thingName": "lamp"}, ""},
		{"", "GET", "/things/lamp/principals", "ListThingPrincipals", map[string]string{"thingName": "lamp"}, ""},
		{"", "POST", "/keys-and-certificate", "CreateKeysAndCertificate", nil, ""},
		{"", "GET", "/certificates", "ListCertificates", nil, ""},
		{"", "PUT", "/certificates/abc", "UpdateCertificate", map[string]string{"certificateId": "abc"}, ""},
		{"", "GET", "/endpoint", "DescribeEndpoint", nil, ""},
		{"", "GET", "/things/", "DescribeThing", map[string]string{"thingName": ""}, ""},
		// Escaped slashes stay inside a label: this is one thing, not a sub-resource.
		{"", "GET", "/things/a%2Fshadow", "DescribeThing", map[string]string{"thingName": "a/shadow"}, ""},
		{"iot", "GET", "/things/lamp/shadow", "", nil, "UnknownOperationException"},
		{"iotdata", "GET", "/things/lamp", "", nil, "UnknownOperationException"},
		{"iot-jobs-data", "GET", "/things/lamp/jobs/j1", "", nil, "UnknownOperationException"},
		{"", "GET", "/topics", "", nil, "UnknownOperationException"},
		{"", "GET", "/", "", nil, "UnknownOperationException"},
		{"", "GET", "/topics/a", "", nil, "MethodNotAllowedException"},
		{"", "PATCH", "/things/lamp", "", nil, "MethodNotAllowedException"},
		{"", "GET", "/topics/a%zz", "", nil, "InvalidRequestException"},
		{"", "GET", "things", "", nil, "InvalidRequestException"},
	}
	for _, tc := range tests {
		t.Run(tc.service+" "+tc.method+" "+tc.path, func(t *testing.T) {
			rt, labels, err := match(tc.service, tc.method, tc.path)
			if tc.code != "" {
				var ae *apiError
				if !errors.As(err, &ae) || ae.code != tc.code {
					t.Fatalf("got route %v, err %v; want %s", rt, err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("match: %v", err)
			}
			if rt.op != tc.op {
				t.Errorf("op %s, want %s", rt.op, tc.op)
			}
			if d := cmp.Diff(tc.labels, labels); d != "" {
				t.Errorf("labels (-want +got):\n%s", d)
			}
		})
	}
}

// FuzzMatch checks that the router never panics, that every label it
// returns round-trips through escaping, and that errors are API errors.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{"/things/lamp/shadow", "/topics/a%2Fb%2B%23", "/topics/a/b", "/api/things/shadow/ListNamedShadowsForThing/x",
		"/things/%", "/things//principals", "//", "/certificates/" + strings.Repeat("a", 64), "/topics/%E2%82%AC"} {
		f.Add("", "GET", s)
		f.Add("iotdata", "POST", s)
	}
	f.Add("iot", "DELETE", "/things/a%3Ab")
	f.Fuzz(func(t *testing.T, service, method, path string) {
		rt, labels, err := match(service, method, path)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status < 400 || ae.code == "" {
				t.Fatalf("error %v is not an API error", err)
			}
			return
		}
		if rt.method != method {
			t.Fatalf("route %s for method %s", rt.op, method)
		}
		for name, v := range labels {
			if !strings.Contains(strings.Join(rt.path, "/"), "{"+name) {
				t.Fatalf("label %s not in route %s", name, rt.op)
			}
			// A label that was one escaped segment re-escapes to a path that matches again.
			if name == "topic" {
				continue
			}
			p := strings.Replace("/"+strings.Join(rt.path, "/"), "{"+name+"}", url.PathEscape(v), 1)
			if rt2, l2, err := match(service, method, p); err != nil || rt2 != rt || l2[name] != v {
				t.Fatalf("label %s=%q does not round-trip through %q: %v %v", name, v, p, l2, err)
			}
		}
	})
}

func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a%2Fb", "/%", "/%zz", "/a%20b/c%3A", "/%E2%82%AC//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		segs, err := splitPath(p)
		if err != nil {
			return
		}
		// Re-escaping each segment and splitting again gives the same segments.
		esc := make([]string, len(segs))
		for i, s := range segs {
			esc[i] = url.PathEscape(s)
		}
		again, err := splitPath("/" + strings.Join(esc, "/"))
		if err != nil {
			t.Fatalf("re-escaped path: %v", err)
		}
		if d := cmp.Diff(segs, again); d != "" {
			t.Fatalf("(-first +again):\n%s", d)
		}
	})
}
