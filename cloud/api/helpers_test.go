package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/shadow"
	"github.com/iotagent/iotagent/cloud/store"
)

// testNow is the fixed clock of most tests.
var testNow = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

type published struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
}

// env is a Server over the real registry, shadow service and CA, each on a
// fresh database in t.TempDir().
type env struct {
	srv *Server
	reg *registry.Registry
	sh  *shadow.Service
	ca  *pki.CA

	mu   sync.Mutex
	pubs []published
}

func (e *env) published() []published {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]published(nil), e.pubs...)
}

// newEnv builds an env; edit may change the Options before New.
func newEnv(t testing.TB, edit func(*Options)) *env {
	t.Helper()
	return newEnvClock(t, func() time.Time { return testNow }, edit)
}

// newEnvClock is newEnv with the services on the given clock.
func newEnvClock(t testing.TB, clock func() time.Time, edit func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "sim.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		reg: registry.New(db, "us-east-1", "123456789012", clock),
		sh:  shadow.New(db, func(string, []byte) {}, clock),
		ca:  ca,
	}
	o := Options{
		Shadows:  e.sh,
		Registry: e.reg,
		Issuer:   ca,
		Publish: func(topic string, payload []byte, qos byte, retain bool) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.pubs = append(e.pubs, published{topic, string(payload), qos, retain})
			return nil
		},
		Endpoint: "sim-ats.iot.us-east-1.example",
		Now:      clock,
		// Most tests are about operations; TestStrictMode and the CLI
		// tests sign for real.
		NoAuth: true,
	}
	if edit != nil {
		edit(&o)
	}
	e.srv = New(o)
	return e
}

// resp is a recorded response.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// errorCode checks that r is a well-formed REST error and returns its code
// and message.
func (r resp) errorCode(t testing.TB) (string, string) {
	t.Helper()
	if r.Status < 400 {
		t.Fatalf("status %d, want an error; body %s", r.Status, r.Body)
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.Body, err)
	}
	if _, ok := body["code"]; ok {
		t.Errorf("error body %s has a code member; REST errors must not", r.Body)
	}
	msg, _ := body["message"].(string)
	if msg == "" {
		t.Errorf("error body %s has no message", r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q", ct)
	}
	return r.Header.Get("x-amzn-ErrorType"), msg
}

func (r resp) json(t testing.TB, v any) {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("status %d, want 200; body %s", r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// do serves one request in process. target is the raw request URI.
func (e *env) do(t testing.TB, method, target string, body []byte, hdr ...string) resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	if rec.Header().Get("x-amzn-RequestId") == "" {
		t.Errorf("%s %s: no x-amzn-RequestId", method, target)
	}
	return resp{rec.Code, rec.Header(), rec.Body.Bytes()}
}

// wantError checks the status and code of an error response.
func (e *env) wantError(t testing.TB, r resp, status int, code string) string {
	t.Helper()
	got, msg := r.errorCode(t)
	if r.Status != status || got != code {
		t.Errorf("got %d %s (%s), want %d %s", r.Status, got, msg, status, code)
	}
	return msg
}

// mustCreateCert makes an (in)active certificate through the API.
func (e *env) mustCreateCert(t testing.TB, active bool) (id, arn string) {
	t.Helper()
	target := "/keys-and-certificate"
	if active {
		target += "?setAsActive=true"
	}
	var out struct {
		CertificateArn string `json:"certificateArn"`
		CertificateID  string `json:"certificateId"`
	}
	e.do(t, "POST", target, nil).json(t, &out)
	return out.CertificateID, out.CertificateArn
}

// brokenRegistry fails every call with an unexpected error.
type brokenRegistry struct{ Registry }

var errDisk = errors.New("disk on fire")

func (brokenRegistry) ListThings() ([]registry.Thing, error)        { return nil, errDisk }
func (brokenRegistry) DescribeThing(string) (registry.Thing, error) { return registry.Thing{}, errDisk }

// brokenIssuer fails to issue.
type brokenIssuer struct{}

func (brokenIssuer) CreateKeysAndCertificate(string) ([]byte, []byte, error) {
	return nil, nil, errDisk
}

// brokenShadows returns a non-shadow error.
type brokenShadows struct{ Shadows }

func (brokenShadows) Get(string, string, []byte) ([]byte, error) { return nil, errDisk }
