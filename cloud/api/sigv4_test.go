package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// signedRequest builds a request to the in-process server signed as a client
// would sign it.
func signedRequest(t *testing.T, method, target string, body []byte, creds Credentials, region, service string, at time.Time, hdr ...string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// httptest.NewRequest leaves RequestURI as given and Host as example.com;
	// sign sees the same URL and host the server will.
	sign(req, body, creds, region, service, at)
	return req
}

func TestStrictMode(t *testing.T) {
	creds := Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "s3cret"}
	e := newEnv(t, func(o *Options) { o.Credentials, o.NoAuth = &creds, false })
	if _, err := e.sh.Update("lamp", "", []byte(`{"state":{"reported":{"on":true}}}`)); err != nil {
		t.Fatal(err)
	}
	serve := func(req *http.Request) resp {
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		return resp{rec.Code, rec.Header(), rec.Body.Bytes()}
	}
	tests := []struct {
		name    string
		req     func(t *testing.T) *http.Request
		status  int
		code    string
		publish string // topic expected to be published on success
	}{
		{name: "signed shadow get", status: 200, req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp/shadow", nil, creds, "us-east-1", "iotdata", testNow)
		}},
		{name: "dev guide signing name", status: 200, req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp/shadow", nil, creds, "us-east-1", "iotdevicegateway", testNow)
		}},
		{name: "escaped topic, query and body", status: 200, publish: "a/b c", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "POST", "/topics/a%2Fb%20c?qos=1&retain=false", []byte(`{"x":1}`), creds, "us-east-1", "iotdata", testNow,
				"Content-Type", "application/octet-stream")
		}},
		{name: "session token", status: 200, req: func(t *testing.T) *http.Request {
			c := creds
			c.SessionToken = "tok+/="
			return signedRequest(t, "GET", "/endpoint?endpointType=iot%3AData-ATS", nil, c, "us-east-1", "iot", testNow)
		}},
		{name: "clock skew within 15 minutes", status: 200, req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp/shadow", nil, creds, "us-east-1", "iotdata", testNow.Add(14*time.Minute))
		}},
		{name: "unsigned", status: 403, code: "MissingAuthenticationTokenException", req: func(t *testing.T) *http.Request {
			return httptest.NewRequest("GET", "/things/lamp/shadow", nil)
		}},
		{name: "malformed", status: 403, code: "IncompleteSignatureException", req: func(t *testing.T) *http.Request {
			r := httptest.NewRequest("GET", "/things/lamp/shadow", nil)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x")
			return r
		}},
		{name: "unknown key", status: 403, code: "UnrecognizedClientException", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp/shadow", nil, Credentials{AccessKeyID: "OTHER", SecretAccessKey: "s3cret"}, "us-east-1", "iotdata", testNow)
		}},
		{name: "wrong secret", status: 403, code: "InvalidSignatureException", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp/shadow", nil, Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "guess"}, "us-east-1", "iotdata", testNow)
		}},
		{name: "tampered body", status: 403, code: "InvalidSignatureException", req: func(t *testing.T) *http.Request {
			r := signedRequest(t, "POST", "/topics/a", []byte("good"), creds, "us-east-1", "iotdata", testNow)
			r.Body = httptestBody("evil")
			return r
		}},
		{name: "tampered query", status: 403, code: "InvalidSignatureException", req: func(t *testing.T) *http.Request {
			r := signedRequest(t, "POST", "/topics/a?qos=0", []byte("x"), creds, "us-east-1", "iotdata", testNow)
			r.URL.RawQuery = "qos=1"
			return r
		}},
		{name: "wrong region", status: 403, code: "InvalidSignatureException", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp/shadow", nil, creds, "eu-west-1", "iotdata", testNow)
		}},
		{name: "unknown service", status: 403, code: "InvalidSignatureException", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp/shadow", nil, creds, "us-east-1", "s3", testNow)
		}},
		{name: "expired", status: 403, code: "InvalidSignatureException", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp/shadow", nil, creds, "us-east-1", "iotdata", testNow.Add(-16*time.Minute))
		}},
		{name: "no X-Amz-Date", status: 403, code: "IncompleteSignatureException", req: func(t *testing.T) *http.Request {
			r := signedRequest(t, "GET", "/things/lamp/shadow", nil, creds, "us-east-1", "iotdata", testNow)
			r.Header.Del("X-Amz-Date")
			return r
		}},
		{name: "data path under the control plane's scope", status: 404, code: "UnknownOperationException", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp/shadow", nil, creds, "us-east-1", "iot", testNow)
		}},
		{name: "jobs data plane scope", status: 404, code: "UnknownOperationException", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "GET", "/things/lamp", nil, creds, "us-east-1", "iot-jobs-data", testNow)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.published())
			r := serve(tc.req(t))
			if tc.code != "" {
				e.wantError(t, r, tc.status, tc.code)
				return
			}
			if r.Status != tc.status {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if tc.publish != "" {
				p := e.published()
				if len(p) != before+1 || p[len(p)-1].Topic != tc.publish {
					t.Errorf("published %+v, want one message on %q", p[before:], tc.publish)
				}
			}
		})
	}
}

func httptestBody(s string) *readCloser { return &readCloser{strings.NewReader(s)} }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

func TestNoAuthMode(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("unverified signature accepted", func(t *testing.T) {
		req := signedRequest(t, "GET", "/endpoint", nil, Credentials{AccessKeyID: "any", SecretAccessKey: "thing"}, "ap-south-1", "iot", testNow.Add(-48*time.Hour))
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Errorf("status %d: %s", rec.Code, rec.Body)
		}
	})
	t.Run("malformed rejected", func(t *testing.T) {
		r := e.do(t, "GET", "/endpoint", nil, "Authorization", "Bearer abc")
		e.wantError(t, r, 403, "IncompleteSignatureException")
	})
	t.Run("unknown signing service routes by path", func(t *testing.T) {
		req := signedRequest(t, "GET", "/endpoint", nil, Credentials{AccessKeyID: "any", SecretAccessKey: "thing"}, "us-east-1", "execute-api", testNow)
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Errorf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
