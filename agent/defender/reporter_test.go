package defender

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

type published struct {
	topic   string
	payload []byte
}

// fakeMQTT records publishes and keeps the handlers subscribed.
type fakeMQTT struct {
	mu       sync.Mutex
	pubs     []published
	handlers map[string]func(string, []byte)
	err      error
	sent     chan published
}

func newFakeMQTT() *fakeMQTT {
	return &fakeMQTT{handlers: map[string]func(string, []byte){}, sent: make(chan published, 16)}
}

func (f *fakeMQTT) publish(_ context.Context, topic string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	p := published{topic, append([]byte(nil), payload...)}
	f.pubs = append(f.pubs, p)
	select {
	case f.sent <- p:
	default:
	}
	return nil
}

func (f *fakeMQTT) subscribe(filter string, h func(string, []byte)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[filter] = h
	return nil
}

func (f *fakeMQTT) deliver(t *testing.T, topic string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	h := f.handlers[topic]
	f.mu.Unlock()
	if h == nil {
		t.Fatalf("no handler for %s", topic)
	}
	h(topic, b)
}

func (f *fakeMQTT) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pubs)
}

func newTestReporter(t *testing.T, f *fakeMQTT, o Options) *Reporter {
	t.Helper()
	if o.Thing == "" {
		o.Thing = "box-1"
	}
	if o.Format == "" {
		o.Format = FormatJSON
	}
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	if o.Collector == nil {
		o.Collector = fixtureCollector("proc")
	}
	o.Publish, o.Subscribe = f.publish, f.subscribe
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Subscribe(); err != nil {
		t.Fatal(err)
	}
	return r
}

func decodeJSON(t *testing.T, b []byte) *Report {
	t.Helper()
	r, err := DecodeReport(FormatJSON, b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewInvalid(t *testing.T) {
	_, err := New(Options{Format: "xml", Interval: time.Second})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	for _, f := range []string{"Thing", "Format", "Interval", "StateDir", "Publish"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
}

func TestReportContents(t *testing.T) {
	f := newFakeMQTT()
	now := time.UnixMilli(1760000000123)
	coll := fixtureCollector("proc")
	r := newTestReporter(t, f, Options{
		Collector: coll,
		Now:       func() time.Time { return now },
		Custom: func() Custom {
			return Custom{OutboxDepth: 3, OutboxDropped: 1, SensorReadErrors: 2, Reconnects: 4}
		},
	})
	if err := r.Report(context.Background()); err != nil {
		t.Fatal(err)
	}
	coll.ProcRoot = "testdata/proc2" // counters moved on
	now = now.Add(time.Minute)
	if err := r.Report(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.count() != 2 {
		t.Fatalf("%d publishes, want 2", f.count())
	}
	first, second := decodeJSON(t, f.pubs[0].payload), decodeJSON(t, f.pubs[1].payload)
	if f.pubs[0].topic != "$aws/things/box-1/defender/metrics/json" {
		t.Errorf("topic = %s", f.pubs[0].topic)
	}
	if first.Metrics.NetworkStats != (NetworkStats{}) {
		t.Errorf("first report's network stats = %+v, want zeros", first.Metrics.NetworkStats)
	}
	n := func(v float64) []CustomValue { return Number(v) }
	want := &Report{
		Header: Header{ReportID: 1760000060123, Version: "1.0"},
		Metrics: &Metrics{
			ListeningTCPPorts: PortList{Ports: []Port{{Port: 22}, {Interface: "lo", Port: 631}}, Total: 2},
			ListeningUDPPorts: PortList{Ports: []Port{{Port: 68}, {Port: 5353}}, Total: 2},
			NetworkStats:      NetworkStats{BytesIn: 2000, BytesOut: 1500, PacketsIn: 20, PacketsOut: 15},
			TCPConnections: TCPConnections{Established: Established{Total: 3, Connections: []Connection{
				{LocalInterface: "wlan0", LocalPort: 22, RemoteAddr: "192.168.1.2:53698"},
				{LocalInterface: "wlan0", LocalPort: 8080, RemoteAddr: "192.168.1.2:57508"},
				{LocalInterface: "wlan0", LocalPort: 51708, RemoteAddr: "52.1.2.3:8883"},
			}}},
		},
		CustomMetrics: map[string][]CustomValue{
			MetricCPUTemp: n(48.312), MetricOutboxDepth: n(3), MetricOutboxDropped: n(1),
			MetricSensorReadErrors: n(2), MetricReconnects: n(4),
		},
	}
	if diff := cmp.Diff(want, second); diff != "" {
		t.Errorf("second report (-want +got):\n%s", diff)
	}
	// JSON uses the long names and sends empty lists as [].
	if !strings.Contains(string(f.pubs[1].payload), `"listening_tcp_ports":{"ports":[`) {
		t.Errorf("JSON report lacks long names: %s", f.pubs[1].payload)
	}
}

func TestEmptyListsAreArrays(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "net"), 0o755)
	os.WriteFile(filepath.Join(dir, "net", "dev"), []byte("a\nb\n"), 0o644)
	f := newFakeMQTT()
	r := newTestReporter(t, f, Options{Collector: &Collector{ProcRoot: dir, SysRoot: dir, Interfaces: fixtureInterfaces}})
	b, err := r.Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"ports":[]`, `"connections":[]`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("report %s lacks %s", b, s)
		}
	}
}

func TestReportIDMonotonicAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	f := newFakeMQTT()
	now := time.UnixMilli(1760000000000)
	clock := func() time.Time { return now }
	r1 := newTestReporter(t, f, Options{StateDir: dir, Now: clock})
	for range 2 {
		if err := r1.Report(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Same millisecond: +1. Then a restart with the clock an hour back.
	if got := r1.Stats().LastReportID; got != 1760000000001 {
		t.Fatalf("LastReportID = %d, want 1760000000001", got)
	}
	now = now.Add(-time.Hour)
	r2 := newTestReporter(t, f, Options{StateDir: dir, Now: clock})
	dry, err := r2.Build()
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeJSON(t, dry).Header.ReportID; got != 1760000000002 {
		t.Errorf("dry-run report id = %d, want 1760000000002", got)
	}
	if err := r2.Report(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r2.Stats().LastReportID; got != 1760000000002 {
		t.Errorf("after restart LastReportID = %d, want 1760000000002 (Build must not use ids up)", got)
	}
	if f.count() != 3 {
		t.Errorf("%d publishes, want 3 (Build publishes nothing)", f.count())
	}
}

func TestResponses(t *testing.T) {
	f := newFakeMQTT()
	got := make(chan Response, 4)
	now := time.UnixMilli(1760000000000)
	r := newTestReporter(t, f, Options{Now: func() time.Time { return now }, OnResponse: func(r Response) { got <- r }})
	const base = "$aws/things/box-1/defender/metrics/json"
	if err := r.Report(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := r.Stats().LastReportID
	// An answer to someone else's report is ignored.
	f.deliver(t, base+"/accepted", Response{ThingName: "box-1", ReportID: 42, Status: "ACCEPTED"})
	f.deliver(t, base+"/accepted", Response{ThingName: "box-1", ReportID: id, Status: "ACCEPTED"})
	if a := <-got; a.ReportID != id {
		t.Fatalf("OnResponse got %+v", a)
	}
	if err := r.Report(context.Background()); err != nil {
		t.Fatal(err)
	}
	id2 := r.Stats().LastReportID
	f.deliver(t, base+"/rejected", Response{ThingName: "box-1", ReportID: id2, Status: "REJECTED",
		StatusDetails: &StatusDetails{ErrorCode: "InvalidPayload", ErrorMessage: "Malformed metrics report"}})
	<-got
	// The same rejection again (a duplicate delivery) is not counted twice.
	f.deliver(t, base+"/rejected", Response{ThingName: "box-1", ReportID: id2, Status: "REJECTED"})
	st := r.Stats()
	want := Stats{Sent: 2, Accepted: 1, Rejected: 1, LastReportID: id2,
		LastError: "report " + itoa(id2) + " rejected: InvalidPayload: Malformed metrics report"}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if f.count() != 2 {
		t.Errorf("%d publishes after a rejection, want 2: a rejected report is not resent", f.count())
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestPublishFailure(t *testing.T) {
	f := newFakeMQTT()
	f.err = errors.New("not connected")
	r := newTestReporter(t, f, Options{})
	if err := r.Report(context.Background()); err == nil {
		t.Fatal("Report succeeded with a failing Publish")
	}
	if st := r.Stats(); st.PublishFailures != 1 || st.Sent != 0 || !strings.Contains(st.LastError, "not connected") {
		t.Errorf("Stats = %+v", st)
	}
}

// TestRunSchedule checks the first delay, the interval and SetInterval on
// synctest's fake clock.
func TestRunSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeMQTT()
		r := newTestReporter(t, f, Options{FirstDelay: 10 * time.Second, Interval: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		start := time.Now()
		var at []time.Duration
		for range 3 {
			<-f.sent
			at = append(at, time.Since(start))
		}
		r.SetInterval(2 * time.Second) // under the minimum: raised to 5 s
		synctest.Wait()
		setAt := time.Since(start)
		<-f.sent
		at = append(at, time.Since(start)-setAt)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{10 * time.Second, 70 * time.Second, 130 * time.Second, 5 * time.Second}
		if diff := cmp.Diff(want, at); diff != "" {
			t.Errorf("report times (-want +got):\n%s", diff)
		}
		if r.Interval() != MinInterval {
			t.Errorf("Interval = %v, want %v", r.Interval(), MinInterval)
		}
	})
}

// TestReportSizes measures a typical report in JSON and in CBOR.
func TestReportSizes(t *testing.T) {
	f := newFakeMQTT()
	r := newTestReporter(t, f, Options{Custom: func() Custom { return Custom{OutboxDepth: 12, Reconnects: 3} }})
	j, err := r.Build()
	if err != nil {
		t.Fatal(err)
	}
	rep := decodeJSON(t, j)
	c, err := rep.Encode(FormatCBOR)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeReport(FormatCBOR, c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep, back); diff != "" {
		t.Errorf("CBOR round trip (-want +got):\n%s", diff)
	}
	t.Logf("typical report (2 TCP + 2 UDP listeners, 3 connections, %d custom metrics): JSON %d bytes, CBOR %d bytes (%.0f%%)", len(rep.CustomMetrics),
		len(j), len(c), 100*float64(len(c))/float64(len(j)))
	if len(c) >= len(j) {
		t.Errorf("CBOR %d bytes is not smaller than JSON %d bytes", len(c), len(j))
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, format := range []string{FormatJSON, FormatCBOR} {
		b.Run(format, func(b *testing.B) {
			r, err := New(Options{Thing: "box-1", Format: format, StateDir: b.TempDir(), Collector: fixtureCollector("proc"),
				Publish: func(context.Context, string, []byte) error { return nil }})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Build(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func nopPublish(context.Context, string, []byte) error { return nil }
