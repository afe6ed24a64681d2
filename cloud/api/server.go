package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/iotagent/iotagent/cloud/registry"
)

// Shadows is the shadow service the data plane fronts. Every error it returns
// is expected to be a *shadow.Error, whose Code becomes the HTTP status.
type Shadows interface {
	Get(thing, name string, payload []byte) ([]byte, error)
	Update(thing, name string, payload []byte) ([]byte, error)
	Delete(thing, name string, payload []byte) ([]byte, error)
	ListNamed(thing string) ([]string, error)
}

// Registry is the thing and certificate registry the control plane fronts.
// *registry.Registry satisfies it.
type Registry interface {
	Region() string
	Account() string
	CreateThing(name, typeName string, attrs map[string]string) (registry.Thing, error)
	DescribeThing(name string) (registry.Thing, error)
	ListThings() ([]registry.Thing, error)
	DeleteThing(name string) error
	RegisterCertificate(certPEM []byte, status string) (registry.Certificate, error)
	DescribeCertificate(id string) (registry.Certificate, error)
	ListCertificates() ([]registry.Certificate, error)
	UpdateCertificate(id, status string) error
	AttachThingPrincipal(thing, certID string) error
	DetachThingPrincipal(thing, certID string) error
	ThingPrincipals(thing string) ([]string, error)
}

// Issuer mints a new device key pair (RSA 2048, as AWS's) and a
// certificate for it, for CreateKeysAndCertificate. *pki.CA satisfies it.
type Issuer interface {
	CreateKeysAndCertificate(commonName string) (certPEM, keyPEM []byte, err error)
}

// Publisher publishes a message on the broker, for iot-data Publish.
type Publisher func(topic string, payload []byte, qos byte, retain bool) error

// Options configure a Server. Any service left nil makes the operations that
// need it fail with InternalFailureException.
type Options struct {
	Shadows  Shadows
	Registry Registry
	Issuer   Issuer
	Publish  Publisher
	// Defender serves the Device Defender Detect operations and iotsim's audit.
	Defender Defender
	// Jobs serves the Jobs control plane (*jobs.Service).
	Jobs Jobs
	// Faults is iotsim's fault injector (*broker.Broker), for the
	// /iotsim/faults operations.
	Faults Faults
	// Observer records watched clients (*broker.Broker), for the
	// /iotsim/observations operations.
	Observer Observer
	// Templates stores provisioning templates (*registry.Registry).
	Templates Templates
	// Rules stores and runs topic rules (*rules.Engine).
	Rules Rules
	// Endpoint is DescribeEndpoint's answer: a bare host, no scheme or port.
	Endpoint string
	Logger   *slog.Logger
	// Now is the clock (signature skew, timestamps); nil means time.Now.
	Now func() time.Time
	// Credentials are the access key pair every request must be
	// SigV4-signed with (header or presigned query). With neither
	// Credentials nor NoAuth, every request is refused.
	Credentials *Credentials
	// NoAuth turns authentication off (iotsim serve --auth none):
	// signatures are parsed, for routing, and not verified.
	NoAuth bool
}

// Server is an http.Handler serving the iot and iot-data REST APIs.
// It is safe for concurrent use.
type Server struct {
	o   Options
	log *slog.Logger
	now func() time.Time
}

// MaxBodyBytes bounds every request body; larger requests get 413.
const MaxBodyBytes = 1 << 20

// New returns a Server for o. It starts no goroutines.
func New(o Options) *Server {
	s := &Server{o: o, log: o.Logger, now: o.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// call is one request on its way through a handler.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	op     string
	labels map[string]string
	query  url.Values
	body   []byte
}

// apiError is an AWS-style error response.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%d): %s", e.code, e.status, e.message) }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "InvalidRequestException", format, args...)
}

// ServeHTTP routes one request and writes its response.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	w.Header().Set("x-amzn-RequestId", reqID)
	op, err := s.serve(w, r)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			s.log.Error("request failed", "op", op, "request_id", reqID, "err", err)
			ae = errorf(http.StatusInternalServerError, "InternalFailureException", "Internal service failure")
		}
		writeError(w, ae)
		s.log.Debug("request", "method", r.Method, "path", r.URL.EscapedPath(), "op", op,
			"status", ae.status, "code", ae.code, "request_id", reqID)
		return
	}
	s.log.Debug("request", "method", r.Method, "path", r.URL.EscapedPath(), "op", op,
		"status", http.StatusOK, "request_id", reqID)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) (string, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return "", invalid("Could not read the request body")
	}
	if len(body) > MaxBodyBytes {
		return "", errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException",
			"The payload exceeds the maximum size allowed")
	}
	auth, err := s.authenticate(r, body)
	if err != nil {
		return "", err
	}
	service := ""
	if auth != nil {
		service = auth.Service
	}
	rt, labels, err := match(service, r.Method, r.URL.EscapedPath())
	if err != nil {
		return "", err
	}
	c := &call{w: w, r: r, op: rt.op, labels: labels, query: r.URL.Query(), body: body}
	return rt.op, rt.handle(s, c)
}

func (s *Server) region() string {
	if s.o.Registry == nil {
		return ""
	}
	return s.o.Registry.Region()
}

func writeError(w http.ResponseWriter, e *apiError) {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{e.message})
	w.Header().Set("x-amzn-ErrorType", e.code)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

// writeJSON answers 200 with v as a JSON body.
func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return writeRaw(w, b)
}

// writeRaw answers 200 with an already-encoded JSON document.
func writeRaw(w http.ResponseWriter, b []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// epoch is a time that encodes as a JSON number of epoch seconds with
// millisecond precision, as AWS's rest-json timestamps are.
type epoch time.Time

func (t epoch) IsZero() bool { return time.Time(t).IsZero() }

func (t epoch) MarshalJSON() ([]byte, error) {
	ms := time.Time(t).UnixMilli()
	if ms%1000 == 0 {
		return fmt.Appendf(nil, "%d", ms/1000), nil
	}
	sign := ""
	if ms < 0 {
		sign, ms = "-", -ms
	}
	return fmt.Appendf(nil, "%s%d.%03d", sign, ms/1000, ms%1000), nil
}
