package defender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/internal/atomicfile"
	"github.com/iotagent/iotagent/internal/statefile"
)

// Interval limits. AWS advises at least 300 s between reports; iotsim takes
// shorter intervals for tests and demos.
const (
	DefaultInterval   = 300 * time.Second
	MinInterval       = 5 * time.Second
	DefaultFirstDelay = 10 * time.Second
)

// reportIDFile holds the last report_id used, in the state dir.
const reportIDFile = "defender-report-id"

// Custom metric names the reporter sends.
const (
	MetricCPUTemp          = "cpu_temp_c"
	MetricDiskFree         = "disk_free_bytes"
	MetricOutboxDepth      = "outbox_depth"
	MetricOutboxDropped    = "outbox_dropped"
	MetricSensorReadErrors = "sensor_read_errors"
	MetricReconnects       = "reconnects"
)

// Custom are the agent's own counters, sent as custom metrics.
type Custom struct {
	OutboxDepth      int    // messages queued in the outbox
	OutboxDropped    uint64 // messages the outbox dropped (since it was created)
	SensorReadErrors uint64 // failed sensor reads since start
	Reconnects       uint64 // MQTT reconnects since start
}

// Options configure a Reporter.
type Options struct {
	Thing    string
	Format   string        // FormatJSON or FormatCBOR
	Interval time.Duration // 0 means DefaultInterval; at least MinInterval
	// FirstDelay is the wait before the first report; 0 means DefaultFirstDelay.
	FirstDelay time.Duration
	// StateDir keeps the last report_id (and is where free disk is measured).
	StateDir string
	// Publish sends one message with QoS 1.
	Publish func(ctx context.Context, topic string, payload []byte) error
	// Subscribe registers a handler for a topic filter (made again on reconnect).
	Subscribe func(filter string, h func(topic string, payload []byte)) error
	// Custom returns the agent's counters; nil sends none of them.
	Custom func() Custom
	// Collector reads the metrics; nil means the real /proc and /sys.
	Collector *Collector
	// OnResponse, if set, is called with every answer to one of this
	// reporter's reports (after it is counted). It must not block.
	OnResponse func(Response)
	Now        func() time.Time
	Logger     *slog.Logger
}

// Stats are the reporter's counters since New.
type Stats struct {
	Sent, Accepted, Rejected, PublishFailures uint64
	LastReportID                              int64
	LastError                                 string // last publish, collect or rejection error
}

// Reporter publishes Device Defender reports. Create it with New, then Run.
type Reporter struct {
	o      Options
	log    *slog.Logger
	topic  string
	setIv  chan time.Duration
	collMu sync.Mutex // one report at a time: report ids and deltas

	mu       sync.Mutex
	interval time.Duration
	lastID   int64
	pending  map[int64]bool // report ids sent and not yet answered
	prevNet  map[string]Counters
	stats    Stats
}

// maxPending bounds the ids remembered while waiting for answers.
const maxPending = 16

// New checks o and reads the last report_id. It starts nothing.
func New(o Options) (*Reporter, error) {
	var bad []string
	if o.Thing == "" || strings.ContainsAny(o.Thing, "/+#") {
		bad = append(bad, "Thing")
	}
	if o.Format != FormatJSON && o.Format != FormatCBOR {
		bad = append(bad, "Format")
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Interval < MinInterval {
		bad = append(bad, "Interval")
	}
	if o.StateDir == "" {
		bad = append(bad, "StateDir")
	}
	if o.Publish == nil {
		bad = append(bad, "Publish")
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("new defender reporter: %w options: %s", ErrInvalid, strings.Join(bad, ", "))
	}
	if o.FirstDelay <= 0 {
		o.FirstDelay = DefaultFirstDelay
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Collector == nil {
		o.Collector = &Collector{StateDir: o.StateDir}
	}
	r := &Reporter{
		o:        o,
		log:      o.Logger.With("component", "defender"),
		topic:    Topic(o.Thing, o.Format),
		setIv:    make(chan time.Duration, 1),
		interval: o.Interval,
		pending:  map[int64]bool{},
	}
	id, err := readReportID(o.StateDir, filepath.Join(o.StateDir, reportIDFile))
	if err != nil {
		return nil, fmt.Errorf("new defender reporter: %w", err)
	}
	r.lastID = id
	return r, nil
}

// Topic is the metrics topic of thing for format.
func Topic(thing, format string) string {
	return "$aws/things/" + thing + "/defender/metrics/" + format
}

// readReportID reads the last report id. A file that cannot be read or
// parsed is moved aside and recorded (internal/statefile), and the ids go
// on from the clock, which never makes them go back (it is what AWS's own
// clients use).
func readReportID(stateDir, path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if errors.Is(err, os.ErrPermission) {
		return 0, fmt.Errorf("read report id: %w", err)
	}
	var reason string
	var n int64
	if err != nil {
		reason = "cannot read it: " + err.Error()
	} else if n, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil || n < 0 {
		reason = fmt.Sprintf("not a report id: %q", cutText(b, 40))
	}
	if reason == "" {
		return n, nil
	}
	_, err = statefile.Recover(stateDir, path, statefile.Event{Reason: reason, Action: "report ids go on from the clock"})
	if err != nil {
		return 0, fmt.Errorf("read report id: %w", err)
	}
	return 0, nil
}

func cutText(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// Subscribe registers the accepted/rejected handlers. Run calls it; call
// it yourself only when using Report without Run.
func (r *Reporter) Subscribe() error {
	if r.o.Subscribe == nil {
		return nil
	}
	for _, s := range []string{"/accepted", "/rejected"} {
		if err := r.o.Subscribe(r.topic+s, r.handleResponse); err != nil {
			return fmt.Errorf("subscribe %s: %w", r.topic+s, err)
		}
	}
	return nil
}

// SetInterval changes the report interval (from desired state). Values
// under MinInterval are raised to it.
func (r *Reporter) SetInterval(d time.Duration) {
	d = max(d, MinInterval)
	r.mu.Lock()
	r.interval = d
	r.mu.Unlock()
	select {
	case <-r.setIv:
	default:
	}
	r.setIv <- d
}

// Interval is the current report interval.
func (r *Reporter) Interval() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.interval
}

// Run subscribes to the answers, sends the first report after FirstDelay
// and then one every interval, until ctx ends. A failed report is logged
// and counted; the next one goes at the next tick.
func (r *Reporter) Run(ctx context.Context) error {
	if err := r.Subscribe(); err != nil {
		return err
	}
	t := time.NewTimer(r.o.FirstDelay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.setIv:
			// The new interval applies from now.
			t.Reset(r.Interval())
		case <-t.C:
			if err := r.Report(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("defender report failed", "err", err)
			}
			t.Reset(r.Interval())
		}
	}
}

// Report collects and publishes one report now.
func (r *Reporter) Report(ctx context.Context) error {
	r.collMu.Lock()
	defer r.collMu.Unlock()
	rep, snap, err := r.build()
	if err != nil {
		r.fail(err, false)
		return err
	}
	payload, err := rep.Encode(r.o.Format)
	if err != nil {
		r.fail(err, false)
		return err
	}
	id := rep.Header.ReportID
	// Persist the id before it leaves the device, so that a crash right
	// after the publish cannot make the next id repeat it.
	if err := atomicfile.WriteFile(filepath.Join(r.o.StateDir, reportIDFile), strconv.AppendInt(nil, id, 10), 0o600); err != nil {
		err = fmt.Errorf("persist report id: %w", err)
		r.fail(err, false)
		return err
	}
	r.mu.Lock()
	r.lastID = id
	if len(r.pending) >= maxPending {
		clear(r.pending)
	}
	r.pending[id] = true
	r.mu.Unlock()
	if err := r.o.Publish(ctx, r.topic, payload); err != nil {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
		err = fmt.Errorf("publish report %d: %w", id, err)
		r.fail(err, true)
		return err
	}
	r.mu.Lock()
	r.prevNet = snap.Net // deltas run from the last report that was sent
	r.stats.Sent++
	r.stats.LastReportID = id
	r.mu.Unlock()
	r.log.Debug("defender report sent", "report_id", id, "bytes", len(payload), "format", r.o.Format)
	return nil
}

func (r *Reporter) fail(err error, publish bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if publish {
		r.stats.PublishFailures++
	}
	r.stats.LastError = err.Error()
}

// Build returns the report that would be sent now, encoded, without
// sending it or using up its report_id (iotagent defender report --dry-run).
func (r *Reporter) Build() ([]byte, error) {
	r.collMu.Lock()
	defer r.collMu.Unlock()
	rep, _, err := r.build()
	if err != nil {
		return nil, err
	}
	return rep.Encode(r.o.Format)
}

// build collects a report. The id is epoch milliseconds, at least one
// above the last one used.
func (r *Reporter) build() (*Report, Snapshot, error) {
	snap, err := r.o.Collector.Collect()
	if err != nil {
		return nil, snap, fmt.Errorf("collect metrics: %w", err)
	}
	r.mu.Lock()
	id := max(r.o.Now().UnixMilli(), r.lastID+1)
	prev := maps.Clone(r.prevNet)
	r.mu.Unlock()

	var ns NetworkStats
	if prev != nil { // the first report after start carries zeros
		for name, cur := range snap.Net {
			p := prev[name]
			ns.BytesIn += delta(cur.BytesIn, p.BytesIn)
			ns.BytesOut += delta(cur.BytesOut, p.BytesOut)
			ns.PacketsIn += delta(cur.PacketsIn, p.PacketsIn)
			ns.PacketsOut += delta(cur.PacketsOut, p.PacketsOut)
		}
	}
	rep := &Report{
		Header: Header{ReportID: id, Version: Version},
		Metrics: &Metrics{
			ListeningTCPPorts: PortList{Ports: capList(snap.TCPListen), Total: len(snap.TCPListen)},
			ListeningUDPPorts: PortList{Ports: capList(snap.UDPListen), Total: len(snap.UDPListen)},
			NetworkStats:      ns,
			TCPConnections: TCPConnections{Established: Established{
				Connections: capList(snap.Established), Total: len(snap.Established),
			}},
		},
		CustomMetrics: map[string][]CustomValue{},
	}
	if snap.CPUTempC != nil {
		rep.CustomMetrics[MetricCPUTemp] = Number(*snap.CPUTempC)
	}
	if snap.DiskFreeBytes != nil {
		rep.CustomMetrics[MetricDiskFree] = Number(float64(*snap.DiskFreeBytes))
	}
	if r.o.Custom != nil {
		c := r.o.Custom()
		rep.CustomMetrics[MetricOutboxDepth] = Number(float64(c.OutboxDepth))
		rep.CustomMetrics[MetricOutboxDropped] = Number(float64(c.OutboxDropped))
		rep.CustomMetrics[MetricSensorReadErrors] = Number(float64(c.SensorReadErrors))
		rep.CustomMetrics[MetricReconnects] = Number(float64(c.Reconnects))
	}
	if len(rep.CustomMetrics) == 0 {
		rep.CustomMetrics = nil
	}
	return rep, snap, nil
}

// capList returns at most MaxListEntries entries, never nil (AWS's clients
// send "ports": [] rather than leaving the list out).
func capList[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s[:min(len(s), MaxListEntries)]
}

// handleResponse counts an answer to one of our reports. Answers to other
// ids (another client publishing for this thing, an old report) are
// ignored. A rejection is logged with AWS's error and not retried.
func (r *Reporter) handleResponse(topic string, payload []byte) {
	resp, err := DecodeResponse(payload)
	if err != nil {
		r.log.Debug("defender: unreadable answer", "topic", topic, "err", err)
		return
	}
	rejected := strings.HasSuffix(topic, "/rejected") || resp.Status == "REJECTED"
	r.mu.Lock()
	if !r.pending[resp.ReportID] {
		r.mu.Unlock()
		r.log.Debug("defender: answer for another report", "report_id", resp.ReportID)
		return
	}
	delete(r.pending, resp.ReportID)
	if rejected {
		r.stats.Rejected++
		code, msg := "", ""
		if d := resp.StatusDetails; d != nil {
			code, msg = d.ErrorCode, d.ErrorMessage
		}
		r.stats.LastError = fmt.Sprintf("report %d rejected: %s: %s", resp.ReportID, code, msg)
		r.mu.Unlock()
		r.log.Warn("defender report rejected", "report_id", resp.ReportID, "error_code", code, "error_message", msg)
	} else {
		r.stats.Accepted++
		r.mu.Unlock()
		r.log.Debug("defender report accepted", "report_id", resp.ReportID)
	}
	if r.o.OnResponse != nil {
		r.o.OnResponse(resp)
	}
}

// Stats returns the counters.
func (r *Reporter) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}
