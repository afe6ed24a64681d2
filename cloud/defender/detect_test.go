package defender

import (
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// unit is a Service on a fresh database with a fake clock and fake broker
// counters.
type unit struct {
	svc *Service
	reg *registry.Registry
	db  *store.DB

	mu      sync.Mutex
	now     time.Time
	metrics map[string]broker.ClientMetrics
	pubs    []string
}

func newUnit(t *testing.T) *unit {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "dd.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	u := &unit{db: db, now: t0, metrics: map[string]broker.ClientMetrics{}}
	u.reg = registry.New(db, "us-east-1", "123456789012", u.clock)
	u.svc = u.newService(t)
	return u
}

func (u *unit) newService(t *testing.T) *Service {
	svc, err := New(Options{
		DB: u.db, Registry: u.reg, Now: u.clock,
		Publish: func(topic string, _ []byte) { u.mu.Lock(); u.pubs = append(u.pubs, topic); u.mu.Unlock() },
		Metrics: func() map[string]broker.ClientMetrics {
			u.mu.Lock()
			defer u.mu.Unlock()
			out := map[string]broker.ClientMetrics{}
			for k, v := range u.metrics {
				out[k] = v
			}
			return out
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func (u *unit) clock() time.Time { u.mu.Lock(); defer u.mu.Unlock(); return u.now }

func (u *unit) advance(d time.Duration) time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.now = u.now.Add(d)
	return u.now
}

func (u *unit) set(client string, m broker.ClientMetrics) {
	u.mu.Lock()
	u.metrics[client] = m
	u.mu.Unlock()
}

func ptr[T any](v T) *T { return &v }

func (u *unit) profile(t *testing.T, name string, bs ...Behavior) {
	t.Helper()
	if _, err := u.svc.CreateSecurityProfile(SecurityProfile{Name: name, Behaviors: bs}); err != nil {
		t.Fatal(err)
	}
	if err := u.svc.AttachSecurityProfile(name, "arn:aws:iot:us-east-1:123456789012:all/things"); err != nil {
		t.Fatal(err)
	}
}

func eventTypes(evs []ViolationEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ThingName+" "+e.Behavior.Name+" "+e.ViolationEventType)
	}
	return out
}

// TestCloudSideMetrics drives each counter metric: a datapoint is the
// counter's increase over durationSeconds.
func TestCloudSideMetrics(t *testing.T) {
	set := func(f func(*broker.ClientMetrics, int64)) func(int64) broker.ClientMetrics {
		return func(n int64) broker.ClientMetrics { var m broker.ClientMetrics; f(&m, n); return m }
	}
	tests := []struct {
		metric string
		with   func(int64) broker.ClientMetrics
	}{
		{"aws:num-messages-sent", set(func(m *broker.ClientMetrics, n int64) { m.MessagesSent = n })},
		{"aws:num-messages-received", set(func(m *broker.ClientMetrics, n int64) { m.MessagesReceived = n })},
		{"aws:num-authorization-failures", set(func(m *broker.ClientMetrics, n int64) { m.AuthorizationFailures = n })},
		{"aws:num-connection-attempts", set(func(m *broker.ClientMetrics, n int64) { m.ConnectionAttempts = n })},
		{"aws:num-disconnects", set(func(m *broker.ClientMetrics, n int64) { m.Disconnects = n })},
	}
	for _, tt := range tests {
		t.Run(tt.metric, func(t *testing.T) {
			u := newUnit(t)
			u.profile(t, "p", Behavior{Name: "b", Metric: tt.metric, Criteria: &Criteria{
				ComparisonOperator: "less-than", Value: &MetricValue{Count: ptr[int64](5)}, DurationSeconds: ptr(300),
				ConsecutiveDatapointsToAlarm: ptr(2), ConsecutiveDatapointsToClear: ptr(1),
			}})
			steps := []struct {
				counter int64
				active  int
			}{
				{0, 0},  // baseline
				{10, 0}, // +10 in 300 s: one bad datapoint, two needed
				{20, 1}, // +10 again: in alarm
				{22, 0}, // +2: cleared
			}
			for i, s := range steps {
				u.set("box-1", tt.with(s.counter))
				u.svc.EvaluateCloud(u.advance(300 * time.Second))
				if got := len(u.svc.ListActiveViolations(Filter{})); got != s.active {
					t.Fatalf("step %d: %d active violations, want %d", i, got, s.active)
				}
			}
			evs := u.svc.ListViolationEvents(t0, u.clock(), Filter{ThingName: "box-1"})
			if diff := cmp.Diff([]string{"box-1 b in-alarm", "box-1 b alarm-cleared"}, eventTypes(evs)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if evs[0].MetricValue.Count == nil || *evs[0].MetricValue.Count != 10 {
				t.Errorf("in-alarm value %+v, want count 10", evs[0].MetricValue)
			}
		})
	}
}

func TestSourceIPAndInvalidation(t *testing.T) {
	u := newUnit(t)
	u.profile(t, "p", Behavior{Name: "lan-only", Metric: "aws:source-ip-address", Criteria: &Criteria{
		ComparisonOperator: "in-cidr-set", Value: &MetricValue{CIDRs: []string{"10.0.0.0/8"}},
	}})
	u.set("box-1", broker.ClientMetrics{SourceIP: "127.0.0.1"})
	u.set("box-2", broker.ClientMetrics{SourceIP: "10.1.2.3"})
	u.svc.EvaluateCloud(u.advance(time.Minute))
	act := u.svc.ListActiveViolations(Filter{})
	if len(act) != 1 || act[0].ThingName != "box-1" || act[0].LastViolationValue.CIDRs[0] != "127.0.0.1" {
		t.Fatalf("active = %+v, want box-1 from 127.0.0.1", act)
	}
	// The broker forgets nothing, but a thing no longer seen by Metrics
	// gets no datapoints: after 2 days its violation is invalidated.
	u.mu.Lock()
	delete(u.metrics, "box-1")
	u.mu.Unlock()
	u.svc.EvaluateCloud(u.advance(49 * time.Hour))
	if act := u.svc.ListActiveViolations(Filter{}); len(act) != 0 {
		t.Fatalf("active after 49 h = %+v", act)
	}
	evs := u.svc.ListViolationEvents(t0, u.clock(), Filter{})
	if diff := cmp.Diff([]string{"box-1 lan-only in-alarm", "box-1 lan-only alarm-invalidated"}, eventTypes(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestMessageByteSize(t *testing.T) {
	u := newUnit(t)
	p := &broker.Principal{ClientID: "box-1", ThingName: "box-1"}
	u.svc.HandleMessage(p, "telemetry/box-1", make([]byte, 4096)) // no profile yet: nothing to do
	u.profile(t, "p", Behavior{Name: "small", Metric: "aws:message-byte-size", Criteria: &Criteria{
		ComparisonOperator: "less-than-equals", Value: &MetricValue{Count: ptr[int64](1024)},
	}})
	u.svc.HandleMessage(p, "telemetry/box-1", make([]byte, 1024))
	u.svc.HandleMessage(p, "telemetry/box-1", make([]byte, 4096))
	u.svc.HandleMessage(p, "telemetry/box-1", make([]byte, 10))
	evs := u.svc.ListViolationEvents(t0, u.clock(), Filter{})
	if diff := cmp.Diff([]string{"box-1 small in-alarm", "box-1 small alarm-cleared"}, eventTypes(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if *evs[0].MetricValue.Count != 4096 {
		t.Errorf("in-alarm value %d", *evs[0].MetricValue.Count)
	}
}

func TestDeviceSideBehaviours(t *testing.T) {
	const topic = "$aws/things/box-1/defender/metrics/json"
	u := newUnit(t)
	u.profile(t, "p",
		Behavior{Name: "ssh-only", Metric: "aws:listening-tcp-ports", Criteria: &Criteria{ComparisonOperator: "in-port-set", Value: &MetricValue{Ports: []int{22}}}},
		Behavior{Name: "aws-only", Metric: "aws:destination-ip-addresses", Criteria: &Criteria{ComparisonOperator: "in-cidr-set", Value: &MetricValue{CIDRs: []string{"52.0.0.0/8"}}}},
		Behavior{Name: "quiet", Metric: "aws:all-bytes-out", Criteria: &Criteria{ComparisonOperator: "less-than", Value: &MetricValue{Count: ptr[int64](1000)}}},
		Behavior{Name: "cool", Metric: "cpu_temp_c", Criteria: &Criteria{ComparisonOperator: "less-than", Value: &MetricValue{Number: ptr(70.0)}}},
		Behavior{Name: "fw", Metric: "fw", Criteria: &Criteria{ComparisonOperator: "in-set", Value: &MetricValue{Strings: []string{"v1"}}}},
	)
	report := func(id int, ports, remote string, bytesOut int, temp, fw string) {
		payload := `{"header":{"report_id":` + itoa(id) + `,"version":"1.0"},"metrics":{` +
			`"listening_tcp_ports":{"ports":[` + ports + `],"total":1},` +
			`"network_stats":{"bytes_in":0,"bytes_out":` + itoa(bytesOut) + `,"packets_in":0,"packets_out":0},` +
			`"tcp_connections":{"established_connections":{"connections":[{"remote_addr":"` + remote + `"}],"total":1}}},` +
			`"custom_metrics":{"cpu_temp_c":[{"number":` + temp + `}],"fw":[{"string_list":["` + fw + `"]}]}}`
		u.svc.HandleReport(nil, topic, []byte(payload))
	}
	report(1, `{"port":22}`, "52.1.2.3:8883", 10, "50", "v1")
	if act := u.svc.ListActiveViolations(Filter{}); len(act) != 0 {
		t.Fatalf("normal report raised %+v", act)
	}
	report(2, `{"port":22},{"port":8080}`, "198.51.100.7:443", 5000, "80.5", "v2")
	var names []string
	for _, a := range u.svc.ListActiveViolations(Filter{ThingName: "box-1"}) {
		names = append(names, a.Behavior.Name)
	}
	if diff := cmp.Diff([]string{"aws-only", "cool", "fw", "quiet", "ssh-only"}, sorted(names)); diff != "" {
		t.Errorf("active behaviours (-want +got):\n%s", diff)
	}
	report(3, ``, "52.1.2.3:8883", 10, "50", "v1") // an empty list conforms
	if act := u.svc.ListActiveViolations(Filter{}); len(act) != 0 {
		t.Errorf("after a normal report: %+v", act)
	}
	if got := len(u.svc.ListViolationEvents(t0, u.clock(), Filter{SecurityProfileName: "p"})); got != 10 {
		t.Errorf("%d events, want 10", got)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestTargets(t *testing.T) {
	u := newUnit(t)
	if _, err := u.reg.CreateThing("reg-1", "", nil); err != nil {
		t.Fatal(err)
	}
	b := Behavior{Name: "b", Metric: "aws:num-listening-tcp-ports", Criteria: &Criteria{ComparisonOperator: "less-than", Value: &MetricValue{Count: ptr[int64](1)}}}
	for _, tc := range []struct{ profile, target string }{
		{"registered", "all/registered-things"},
		{"unregistered", "all/unregistered-things"},
	} {
		if _, err := u.svc.CreateSecurityProfile(SecurityProfile{Name: tc.profile, Behaviors: []Behavior{b}}); err != nil {
			t.Fatal(err)
		}
		if err := u.svc.AttachSecurityProfile(tc.profile, "arn:aws:iot:us-east-1:123456789012:"+tc.target); err != nil {
			t.Fatal(err)
		}
	}
	for i, thing := range []string{"reg-1", "stranger"} {
		u.svc.HandleReport(nil, "$aws/things/"+thing+"/defender/metrics/json",
			[]byte(`{"header":{"report_id":`+itoa(i+1)+`,"version":"1.0"},"metrics":{"listening_tcp_ports":{"ports":[],"total":4}}}`))
	}
	var got []string
	for _, a := range u.svc.ListActiveViolations(Filter{}) {
		got = append(got, a.ThingName+" "+a.SecurityProfileName)
	}
	if diff := cmp.Diff([]string{"reg-1 registered", "stranger unregistered"}, sorted(got)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
}

func TestProfileValidationAndPersistence(t *testing.T) {
	u := newUnit(t)
	bad := []Behavior{
		{Name: "bad name!", Metric: "aws:num-disconnects", Criteria: &Criteria{ComparisonOperator: "less-than", Value: &MetricValue{Count: ptr[int64](1)}}},
		{Name: "b", Metric: "aws:nope", Criteria: &Criteria{ComparisonOperator: "less-than", Value: &MetricValue{Count: ptr[int64](1)}}},
		{Name: "b", Metric: "aws:num-disconnects", Criteria: &Criteria{ComparisonOperator: "about", Value: &MetricValue{Count: ptr[int64](1)}}},
		{Name: "b", Metric: "aws:num-disconnects", Criteria: &Criteria{ComparisonOperator: "in-port-set", Value: &MetricValue{Ports: []int{1}}}},
		{Name: "b", Metric: "aws:num-disconnects", Criteria: &Criteria{ComparisonOperator: "less-than"}},
		{Name: "b", Metric: "aws:num-disconnects", Criteria: &Criteria{ComparisonOperator: "less-than", Value: &MetricValue{Count: ptr[int64](1)}, DurationSeconds: ptr(42)}},
		{Name: "b", Metric: "aws:num-disconnects", Criteria: &Criteria{ComparisonOperator: "less-than", Value: &MetricValue{Count: ptr[int64](1)}, ConsecutiveDatapointsToAlarm: ptr(11)}},
		{Name: "b", Metric: "aws:source-ip-address", Criteria: &Criteria{ComparisonOperator: "in-cidr-set", Value: &MetricValue{CIDRs: []string{"nope"}}}},
		{Name: "b", Metric: "aws:num-disconnects"},
	}
	for i, b := range bad {
		if _, err := u.svc.CreateSecurityProfile(SecurityProfile{Name: "p", Behaviors: []Behavior{b}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("behaviour %d: err = %v, want ErrInvalid", i, err)
		}
	}
	if _, err := u.svc.CreateSecurityProfile(SecurityProfile{Name: "bad name"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad profile name: %v", err)
	}
	u.profile(t, "keep", Behavior{Name: "b", Metric: "aws:num-disconnects", Criteria: &Criteria{ComparisonOperator: "less-than", Value: &MetricValue{Count: ptr[int64](1)}}})
	if _, err := u.svc.CreateSecurityProfile(SecurityProfile{Name: "keep"}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	if err := u.svc.AttachSecurityProfile("nope", "arn:aws:iot:us-east-1:123456789012:all/things"); !errors.Is(err, ErrNotFound) {
		t.Errorf("attach missing: %v", err)
	}
	if err := u.svc.AttachSecurityProfile("keep", "arn:aws:iot:eu-west-1:123456789012:all/things"); !errors.Is(err, ErrInvalid) {
		t.Errorf("attach to another region: %v", err)
	}
	// Profiles and report ids survive a restart.
	u.svc.HandleReport(nil, "$aws/things/box-1/defender/metrics/json", []byte(`{"header":{"report_id":5,"version":"1.0"},"metrics":{}}`))
	svc2 := u.newService(t)
	p, err := svc2.DescribeSecurityProfile("keep")
	if err != nil || len(p.Targets) != 1 || p.Version != 1 || !p.CreationDate.Equal(t0) {
		t.Errorf("after restart: %+v, %v", p, err)
	}
	u.svc = svc2
	u.svc.HandleReport(nil, "$aws/things/box-1/defender/metrics/json", []byte(`{"header":{"report_id":5,"version":"1.0"},"metrics":{}}`))
	u.mu.Lock()
	last := u.pubs[len(u.pubs)-1]
	u.mu.Unlock()
	if last != "$aws/things/box-1/defender/metrics/json/rejected" {
		t.Errorf("repeated report id after restart answered on %s", last)
	}
}
