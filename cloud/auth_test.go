package cloud_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// rawCall sends an unsigned (or hand-signed) request and returns status,
// x-amzn-ErrorType and body.
func rawCall(t *testing.T, req *http.Request) (int, string, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), b
}

// TestRESTAndS3RequireSignatures: the attack of issue 11 item 3 (unsigned
// CreateKeysAndCertificate, CreatePolicy iot:*, AttachPolicy; an S3
// overwrite) is refused with AWS's 403s; the same calls signed with
// endpoint.json's credentials work.
func TestRESTAndS3RequireSignatures(t *testing.T) {
	sim := cloudtest.Start(t, "")
	ep := sim.Endpoint()
	if _, err := sim.Objects().Put("ota", "agent.bin", "", strings.NewReader("good firmware")); err != nil {
		t.Fatal(err)
	}
	unsigned := []struct{ method, path, body string }{
		{"POST", "/keys-and-certificate?setAsActive=true", ""},
		{"POST", "/policies/pwn", `{"policyDocument":"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:*\",\"Resource\":\"*\"}]}"}`},
		{"PUT", "/target-policies/pwn", `{"target":"arn:aws:iot:us-east-1:123456789012:cert/x"}`},
		{"GET", "/things/box-1/shadow", ""},
	}
	for _, u := range unsigned {
		req, _ := http.NewRequest(u.method, ep.HTTPEndpoint+u.path, strings.NewReader(u.body))
		status, code, b := rawCall(t, req)
		if status != 403 || code != "MissingAuthenticationTokenException" {
			t.Errorf("unsigned %s %s: %d %s %s", u.method, u.path, status, code, b)
		}
	}
	if _, err := sim.Registry().GetPolicy("pwn"); err == nil {
		t.Error("the unsigned CreatePolicy created pwn")
	}
	if certs, _ := sim.Registry().ListCertificates(); len(certs) != 1 { // the claim certificate
		t.Errorf("%d certificates after unsigned calls, want only the claim's", len(certs))
	}

	wrong := ep.Client()
	wrong.Credentials.SecretAccessKey = "guess"
	var ae *api.APIError
	if err := wrong.CreateThing(context.Background(), "intruder"); !errors.As(err, &ae) || ae.Status != 403 || ae.Code != "InvalidSignatureException" {
		t.Errorf("wrong secret: %v", err)
	}
	other := ep.Client()
	other.Credentials.AccessKeyID = "AKIAOTHER"
	if err := other.CreateThing(context.Background(), "intruder"); !errors.As(err, &ae) || ae.Code != "UnrecognizedClientException" {
		t.Errorf("unknown key: %v", err)
	}
	if err := ep.Client().CreateThing(context.Background(), "box-1"); err != nil {
		t.Errorf("signed CreateThing: %v", err)
	}

	req, _ := http.NewRequest("PUT", ep.HTTPEndpoint+"/s3/ota/agent.bin", strings.NewReader("evil"))
	status, _, b := rawCall(t, req)
	var e struct{ Code string }
	if xml.Unmarshal(b, &e); status != 403 || e.Code != "AccessDenied" {
		t.Errorf("unsigned S3 PUT: %d %s", status, b)
	}
	if got, _ := sim.Objects().Get("ota", "agent.bin", 100); string(got) != "good firmware" {
		t.Errorf("artifact overwritten: %q", got)
	}

	// What iotsim presigns for devices (jobs' placeholders) downloads; an
	// expired or tampered one does not.
	u, err := sim.Objects().PresignGet("ota", "agent.bin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "X-Amz-Credential="+ep.AWSAccessKeyID) {
		t.Errorf("presigned URL %s is not signed with the sim's access key", u)
	}
	req, _ = http.NewRequest("GET", u, nil)
	if status, _, b := rawCall(t, req); status != 200 || string(b) != "good firmware" {
		t.Errorf("presigned GET: %d %s", status, b)
	}
	req, _ = http.NewRequest("GET", strings.Replace(u, "agent.bin", "agent.bin2", 1), nil)
	if status, _, b := rawCall(t, req); status != 403 || !bytes.Contains(b, []byte("SignatureDoesNotMatch")) {
		t.Errorf("tampered presigned GET: %d %s", status, b)
	}
}

func TestPresignedURLExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sim := cloudtest.StartWith(t, cloud.Options{Now: clock})
	if _, err := sim.Objects().Put("ota", "a.bin", "", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	u, err := sim.Objects().PresignGet("ota", "a.bin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	req, _ := http.NewRequest("GET", u, nil)
	if status, _, b := rawCall(t, req); status != 403 || !bytes.Contains(b, []byte("Request has expired")) {
		t.Errorf("expired presigned GET: %d %s", status, b)
	}
}

// TestNoAuth: --auth none is refused on a non-loopback address, and on
// loopback it serves unsigned requests and warns.
func TestNoAuth(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		_, err := cloud.Start(cloud.Options{DataDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: addr, NoAuth: true})
		if !errors.Is(err, cloud.ErrNoAuthNotLoopback) {
			t.Errorf("NoAuth on %s: %v", addr, err)
		}
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	sim := cloudtest.StartWith(t, cloud.Options{NoAuth: true,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))})
	req, _ := http.NewRequest("GET", sim.Endpoint().HTTPEndpoint+"/things", nil)
	if status, _, b := rawCall(t, req); status != 200 {
		t.Errorf("unsigned ListThings with --auth none: %d %s", status, b)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "authentication is OFF") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
