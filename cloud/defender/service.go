package defender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/store"
)

// Errors for callers that branch (the REST API maps them to AWS's codes).
var (
	ErrNotFound = errors.New("defender: not found")
	ErrExists   = errors.New("defender: already exists")
	ErrInvalid  = errors.New("defender: invalid request")
)

// Buckets in the database.
const (
	bucketProfiles  = "defender_profiles"
	bucketReportIDs = "defender_report_ids"
)

// Defaults for Options.
const (
	DefaultKeepReports = 20
	DefaultTick        = time.Minute
	maxEvents          = 10000
	eventRetention     = 14 * 24 * time.Hour
	invalidateAfter    = 48 * time.Hour
)

// Registry is what the service needs of the thing registry;
// *registry.Registry satisfies it.
type Registry interface {
	Region() string
	Account() string
	DescribeThing(name string) (registry.Thing, error)
	ListCertificates() ([]registry.Certificate, error)
}

// Policy is an IoT policy document, for Audit.
type Policy struct {
	Name     string
	Document string
}

// Options configure a Service.
type Options struct {
	DB       *store.DB // profiles and the last report id of every thing
	Registry Registry
	// Publish sends a service message (the accepted/rejected answers).
	Publish func(topic string, payload []byte)
	// Metrics returns the broker's per-client counters (cloud-side
	// metrics); nil disables them.
	Metrics func() map[string]broker.ClientMetrics
	// ThingGroupsOf lists the groups of a thing, for profiles attached to
	// thing groups; nil means no thing is in any group.
	ThingGroupsOf func(thing string) ([]string, error)
	// Policies lists every IoT policy, for Audit; nil skips the policy check.
	Policies func() ([]Policy, error)
	// KeepReports is how many reports are kept per thing; 0 means DefaultKeepReports.
	KeepReports int
	// Tick is how often Run evaluates the cloud-side metrics; 0 means DefaultTick.
	Tick   time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// StoredReport is a report iotsim accepted.
type StoredReport struct {
	ThingName  string        `json:"thingName"`
	Format     string        `json:"format"`
	ReceivedAt time.Time     `json:"receivedAt"`
	Bytes      int           `json:"bytes"`
	Metrics    DeviceMetrics `json:"metrics"`
}

// Service is iotsim's Device Defender. It is safe for concurrent use.
type Service struct {
	o   Options
	log *slog.Logger

	mu       sync.Mutex
	reports  map[string][]StoredReport
	lastID   map[string]int64 // cache of bucketReportIDs
	profiles map[string]*SecurityProfile
	states   map[stateKey]*detectState
	events   []ViolationEvent
	samples  map[string][]sample // cloud-side counters per client id
	nextViol uint64

	hasSizeBehavior atomic.Bool
}

// New loads the stored profiles. It starts nothing.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.Registry == nil || o.Publish == nil {
		return nil, fmt.Errorf("new defender: %w: DB, Registry and Publish are required", ErrInvalid)
	}
	if o.KeepReports <= 0 {
		o.KeepReports = DefaultKeepReports
	}
	if o.Tick <= 0 {
		o.Tick = DefaultTick
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		o: o, log: o.Logger,
		reports:  map[string][]StoredReport{},
		lastID:   map[string]int64{},
		profiles: map[string]*SecurityProfile{},
		states:   map[stateKey]*detectState{},
		samples:  map[string][]sample{},
	}
	err := o.DB.ForEach(bucketProfiles, "", func(_ string, v []byte) error {
		var p SecurityProfile
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decode security profile: %w", err)
		}
		s.profiles[p.Name] = &p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("new defender: load profiles: %w", err)
	}
	s.updateFlagsLocked()
	return s, nil
}

// Run evaluates the cloud-side metrics every Tick until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.o.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.EvaluateCloud(s.o.Now())
		}
	}
}

// Response is the accepted/rejected answer.
type Response struct {
	ThingName     string         `json:"thingName" cbor:"thingName"`
	ReportID      *int64         `json:"reportId,omitempty" cbor:"reportId,omitempty"`
	Status        string         `json:"status" cbor:"status"`
	StatusDetails *StatusDetails `json:"statusDetails,omitempty" cbor:"statusDetails,omitempty"`
	Timestamp     int64          `json:"timestamp" cbor:"timestamp"`
}

// StatusDetails is AWS's rejection reason (note the capitals).
type StatusDetails struct {
	ErrorCode    string `json:"ErrorCode" cbor:"ErrorCode"`
	ErrorMessage string `json:"ErrorMessage" cbor:"ErrorMessage"`
}

// HandleReport is the broker handler for $aws/things/+/defender/metrics/+:
// it validates the report, answers, stores it and runs Detect on it.
func (s *Service) HandleReport(_ *broker.Principal, topic string, payload []byte) {
	thing, format, err := parseTopic(topic)
	if err != nil {
		return // another format: no such service topic
	}
	now := s.o.Now()
	m, err := DecodeReport(format, payload)
	var rid *int64
	if m != nil {
		rid = &m.ReportID
	} else if id, ok := peekReportID(format, payload); ok {
		rid = &id
	}
	var rej *RejectError
	if err == nil && len(thing) > maxThingName {
		err = reject("Thing name is longer than %d bytes", maxThingName)
	}
	if err == nil {
		err = s.accept(thing, format, len(payload), m, now)
	}
	resp := Response{ThingName: thing, ReportID: rid, Status: "ACCEPTED", Timestamp: now.Unix()}
	suffix := "/accepted"
	if err != nil {
		if !errors.As(err, &rej) {
			s.log.Error("defender: store report", "thing", thing, "err", err)
			rej = &RejectError{Code: "InternalError", Message: "Internal error"}
		}
		resp.Status, resp.StatusDetails = "REJECTED", &StatusDetails{ErrorCode: rej.Code, ErrorMessage: rej.Message}
		suffix = "/rejected"
		s.log.Info("defender report rejected", "thing", thing, "code", rej.Code, "message", rej.Message)
	}
	var b []byte
	if format == FormatCBOR {
		b, err = cbor.Marshal(resp)
	} else {
		b, err = json.Marshal(resp)
	}
	if err != nil {
		s.log.Error("defender: encode answer", "err", err)
		return
	}
	if suffix == "/accepted" {
		// Detect runs before the answer goes out, so a device (or a test)
		// that has the answer sees the report's effect.
		s.evaluateReport(thing, m, now)
	}
	s.o.Publish(topic+suffix, b)
}

// peekReportID finds the report id of a report that failed validation, so
// the rejection can echo it.
func peekReportID(format string, payload []byte) (int64, bool) {
	var root map[string]any
	switch format {
	case FormatJSON:
		if json.Unmarshal(payload, &root) != nil {
			return 0, false
		}
	default:
		if cborDec.Unmarshal(payload, &root) != nil {
			return 0, false
		}
	}
	for _, n := range []names{long, short} {
		if h, ok := root[n.header].(map[string]any); ok {
			switch x := h[n.reportID].(type) {
			case float64:
				if x == float64(int64(x)) {
					return int64(x), true
				}
			case uint64:
				return int64(x), x <= 1<<63-1
			case int64:
				return x, true
			}
		}
	}
	return 0, false
}

// accept checks the report id rule and stores the report.
func (s *Service) accept(thing, format string, size int, m *DeviceMetrics, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok := s.lastID[thing]
	if !ok {
		b, err := s.o.DB.Get(bucketReportIDs, thing)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("read last report id: %w", err)
		default:
			last, _ = strconv.ParseInt(string(b), 10, 64)
		}
	}
	if m.ReportID <= last {
		return reject("Report id %d is not greater than the last report id %d of this thing", m.ReportID, last)
	}
	if err := s.o.DB.Put(bucketReportIDs, thing, strconv.AppendInt(nil, m.ReportID, 10)); err != nil {
		return fmt.Errorf("store report id: %w", err)
	}
	s.lastID[thing] = m.ReportID
	rs := append(s.reports[thing], StoredReport{ThingName: thing, Format: format, ReceivedAt: now, Bytes: size, Metrics: *m})
	if len(rs) > s.o.KeepReports {
		rs = append(rs[:0:0], rs[len(rs)-s.o.KeepReports:]...)
	}
	s.reports[thing] = rs
	return nil
}

// Reports returns the last reports of thing, oldest first.
func (s *Service) Reports(thing string) []StoredReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StoredReport(nil), s.reports[thing]...)
}
