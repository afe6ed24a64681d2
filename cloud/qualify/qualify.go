// Package qualify is `iotsim qualify`: a device-qualification suite in the
// spirit of AWS IoT Device Advisor's test cases, run against whatever
// device connects to iotsim as a given thing. Each case drives the device
// with iotsim's faults (broker.Fault) and observes it through the broker's
// record of its client id (broker.ClientObservation), the shadow and the
// jobs, all through iotsim's REST API, so the suite runs against a
// running `iotsim serve` as well as an in-process one. docs/qualify.md
// describes each case and its pass criterion.
package qualify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/cloud/broker"
)

// The cases, in the order they run.
const (
	CaseConnect           = "connect"
	CaseReconnectBackoff  = "reconnect-backoff"
	CaseResubscribe       = "resubscribe"
	CasePublishRetry      = "publish-retry"
	CasePersistentSession = "persistent-session"
	CaseShadow            = "shadow"
	CaseJobs              = "jobs"
	CaseKeepAlive         = "keepalive"
)

// Cases lists every case in run order, with its title.
var Cases = []struct{ Name, Title string }{
	{CaseConnect, "TLS and MQTT connect"},
	{CaseReconnectBackoff, "reconnect with exponential backoff and jitter"},
	{CaseResubscribe, "resubscribe after reconnect"},
	{CasePublishRetry, "QoS 1 publish retried when PUBACK is withheld"},
	{CasePersistentSession, "persistent session resumption"},
	{CaseShadow, "shadow update and delta handling"},
	{CaseJobs, "jobs notify-next and update"},
	{CaseKeepAlive, "long-lived connection (keep-alive)"},
}

// Backoff case parameters (docs/qualify.md): rounds of BackoffRefusals
// refused CONNECTs, until two pass or BackoffMaxRounds; the growth and
// jitter criteria.
const (
	BackoffMaxRounds = 4
	BackoffRefusals  = 5
	// GrowthFactor: the mean of the last three intervals of two rounds
	// must be at least this times the mean of their first two.
	GrowthFactor = 1.5
	// JitterMin: two intervals differ when they differ by more than this
	// and by more than JitterFrac of the longer one.
	JitterMin  = 50 * time.Millisecond
	JitterFrac = 0.05
)

// ErrSetup: the suite could not start (no such thing, iotsim unreachable).
var ErrSetup = errors.New("qualify: cannot start")

// DefaultJobDocument is the job the jobs case creates unless told: an
// operation no device knows, which a device may take to any terminal
// status (REJECTED is the usual answer).
const DefaultJobDocument = `{"operation":"iotsim-qualify"}`

// Options configure a run.
type Options struct {
	// Client reaches the running iotsim's REST API (signed).
	Client *api.Client
	// Thing is the device's thing name; ClientID its MQTT client id
	// (default: the thing name).
	Thing, ClientID string
	// Cases to run (default: all), by name.
	Cases []string
	// Timeout bounds each case (default 2 minutes); the keep-alive case
	// gets its window on top.
	Timeout time.Duration
	// ShadowKey is the dotted path of a boolean the device accepts in the
	// desired state and reports back (e.g. "outputs.led"); default: the
	// first boolean of the shadow's desired state.
	ShadowKey string
	// JobDocument is the jobs case's job document (default
	// DefaultJobDocument). A document with an
	// ${aws:iot:s3-presigned-url:...} placeholder gets a presigned URL
	// configuration.
	JobDocument string
	// KeepAliveWindow is how long the keep-alive case watches the
	// connection (at least, and by default, 1.5 times the keep-alive).
	KeepAliveWindow time.Duration
	// PublishTopic, if set, is a topic filter: the publish-retry case
	// withholds the PUBACK of the device's next QoS 1 PUBLISH to a topic
	// it matches (one the device publishes on by itself, such as its
	// telemetry). Default: any topic, and the case changes the desired
	// state (ShadowKey) to make the device publish its report.
	PublishTopic string
	// RetryGrace is how long the publish-retry case waits for a resend on
	// the same connection before it drops the connection (default 5 s).
	RetryGrace time.Duration
	// Progress, if set, gets a line as each case starts and ends.
	Progress io.Writer
	// Poll is the observation interval (default 100 ms).
	Poll time.Duration
}

// Result is one case's outcome.
type Result struct {
	Case     string  `json:"case"`
	Title    string  `json:"title"`
	Pass     bool    `json:"pass"`
	Seconds  float64 `json:"seconds"`
	Detail   string  `json:"detail"`
	Criteria string  `json:"criteria"`
	// Intervals are the measured intervals between CONNECT attempts, in
	// seconds, per round (reconnect-backoff only).
	Intervals [][]float64 `json:"intervals,omitempty"`
}

// Report is a run's outcome.
type Report struct {
	Thing    string    `json:"thing"`
	ClientID string    `json:"clientId"`
	Started  time.Time `json:"started"`
	Results  []Result  `json:"results"`
	Passed   int       `json:"passed"`
	Failed   int       `json:"failed"`
}

// OK reports whether every case passed.
func (r Report) OK() bool { return r.Failed == 0 && r.Passed > 0 }

// suite is one run.
type suite struct {
	o      Options
	c      *api.Client
	client string
	jobSeq int
	// base are the device's topic filters when first seen settled.
	base []string
}

// criteria are the pass criteria, as the report prints them.
var criteria = map[string]string{
	CaseConnect:           "the device is connected over mutual TLS with its certificate (MQTT 3.1.1 or 5)",
	CaseReconnectBackoff:  fmt.Sprintf("after the server drops it and refuses %d CONNECTs (no CONNACK), in two rounds (of up to %d): mean of the last 3 intervals >= %.1fx mean of the first 2, and the rounds' intervals differ (jitter)", BackoffRefusals, BackoffMaxRounds, GrowthFactor),
	CaseResubscribe:       "after a drop with its session discarded, every topic filter it had is subscribed again",
	CasePublishRetry:      "a QoS 1 PUBLISH whose PUBACK is withheld is sent again: with DUP and the same packet id, or after the reconnect",
	CasePersistentSession: "reconnects with a persistent session: CONNACK session present, and the message queued while it was offline is delivered",
	CaseShadow:            "after desired changes, the device reports the new value and the delta is gone",
	CaseJobs:              "a job created for the thing reaches a terminal status set by the device (SUCCEEDED, FAILED or REJECTED)",
	CaseKeepAlive:         "the connection stays up for the window (>= 1.5x keep-alive) and the device is never silent longer than 1.5x keep-alive (an idle device sends PINGREQs)",
}

// Run runs the cases against the device and returns the report; an error
// (wrapping ErrSetup) means the suite could not run at all.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.Client == nil || o.Thing == "" {
		return Report{}, fmt.Errorf("%w: a client and a thing name are needed", ErrSetup)
	}
	if o.ClientID == "" {
		o.ClientID = o.Thing
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.RetryGrace <= 0 {
		o.RetryGrace = 5 * time.Second
	}
	if o.JobDocument == "" {
		o.JobDocument = DefaultJobDocument
	}
	if !json.Valid([]byte(o.JobDocument)) {
		return Report{}, fmt.Errorf("%w: the job document is not JSON", ErrSetup)
	}
	if k := o.ShadowKey; k != "" && (slices.Contains(strings.Split(k, "."), "") || !utf8.ValidString(k)) {
		return Report{}, fmt.Errorf("%w: shadow key %q: want a dotted path such as outputs.led", ErrSetup, k)
	}
	names, err := selectCases(o.Cases)
	if err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	s := &suite{o: o, c: o.Client, client: o.ClientID}
	if _, err := s.thingARN(ctx); err != nil {
		return Report{}, fmt.Errorf("%w: thing %s: %w", ErrSetup, o.Thing, err)
	}
	if err := s.c.WatchClient(ctx, s.client); err != nil {
		return Report{}, fmt.Errorf("%w: watch client %s: %w", ErrSetup, s.client, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = s.c.UnwatchClient(uctx, s.client)
	}()
	rep := Report{Thing: o.Thing, ClientID: o.ClientID, Started: time.Now().UTC()}
	for _, name := range names {
		if ctx.Err() != nil {
			return rep, fmt.Errorf("qualify: %w", ctx.Err())
		}
		r := s.run(ctx, name)
		rep.Results = append(rep.Results, r)
		if r.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
	}
	return rep, nil
}

func selectCases(want []string) ([]string, error) {
	var all []string
	for _, c := range Cases {
		all = append(all, c.Name)
	}
	if len(want) == 0 {
		return all, nil
	}
	for _, w := range want {
		if !slices.Contains(all, w) {
			return nil, fmt.Errorf("unknown case %q: want one of %s", w, strings.Join(all, ", "))
		}
	}
	var out []string
	for _, n := range all {
		if slices.Contains(want, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

func title(name string) string {
	for _, c := range Cases {
		if c.Name == name {
			return c.Title
		}
	}
	return name
}

// run runs one case under its timeout and removes its faults after.
func (s *suite) run(ctx context.Context, name string) Result {
	r := Result{Case: name, Title: title(name), Criteria: criteria[name]}
	timeout := s.o.Timeout
	if name == CaseKeepAlive {
		// The window comes on top: 1.5 x the keep-alive, which AWS
		// allows up to 20 minutes, or longer when asked.
		timeout += max(s.o.KeepAliveWindow, 30*time.Minute)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if s.o.Progress != nil {
		fmt.Fprintf(s.o.Progress, "qualify: %s: %s ...\n", name, r.Title)
	}
	start := time.Now()
	var faults []string
	add := func(f broker.Fault) error {
		f.Client = s.client
		if f.Duration == 0 {
			f.Duration = broker.Duration(timeout) // never outlives the case
		}
		st, err := s.c.AddFault(cctx, f)
		if err != nil {
			return fmt.Errorf("add fault %s: %w", f.Kind, err)
		}
		faults = append(faults, st.ID)
		return nil
	}
	var err error
	switch name {
	case CaseConnect:
		r.Detail, err = s.connect(cctx)
	case CaseReconnectBackoff:
		r.Detail, r.Intervals, err = s.backoff(cctx, add)
	case CaseResubscribe:
		r.Detail, err = s.resubscribe(cctx, add)
	case CasePublishRetry:
		r.Detail, err = s.publishRetry(cctx, add)
	case CasePersistentSession:
		r.Detail, err = s.persistent(cctx, add, func() error { return s.removeFaults(cctx, &faults) })
	case CaseShadow:
		r.Detail, err = s.shadow(cctx)
	case CaseJobs:
		r.Detail, err = s.jobs(cctx)
	case CaseKeepAlive:
		r.Detail, err = s.keepAlive(cctx)
	}
	_ = s.removeFaults(context.WithoutCancel(ctx), &faults)
	r.Seconds = math.Round(time.Since(start).Seconds()*10) / 10
	r.Pass = err == nil
	if err != nil {
		r.Detail = err.Error()
	}
	if s.o.Progress != nil {
		fmt.Fprintf(s.o.Progress, "qualify: %s: %s (%.1fs): %s\n", name, map[bool]string{true: "PASS", false: "FAIL"}[r.Pass], r.Seconds, r.Detail)
	}
	return r
}

func (s *suite) removeFaults(ctx context.Context, ids *[]string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	for _, id := range *ids {
		if err := s.c.RemoveFault(ctx, id); err != nil && !api.IsCode(err, "ResourceNotFoundException") {
			errs = append(errs, err)
		}
	}
	*ids = nil
	return errors.Join(errs...)
}

// observe polls the observation until cond holds; on timeout the error
// says what was awaited and the last state cond described.
func (s *suite) observe(ctx context.Context, what string, cond func(o broker.ClientObservation) (bool, string)) (broker.ClientObservation, error) {
	state := "no observation yet"
	t := time.NewTicker(s.o.Poll)
	defer t.Stop()
	for {
		o, err := s.c.Observe(ctx, s.client)
		if err == nil {
			var ok bool
			if ok, state = cond(o); ok {
				return o, nil
			}
		} else if ctx.Err() == nil {
			state = err.Error()
		}
		select {
		case <-ctx.Done():
			return o, fmt.Errorf("timed out waiting for %s (%s)", what, state)
		case <-t.C:
		}
	}
}

// connected waits for the device to be connected, and settled: up for
// settleTime with the topic filters it had when first seen subscribed
// again, so that no case starts while the device is still recovering from
// the one before.
func (s *suite) connected(ctx context.Context) (broker.ClientObservation, error) {
	o, err := s.settled(ctx, s.base)
	if err == nil && s.base == nil {
		s.base = o.Subscriptions
	}
	return o, err
}

// reconnected waits for a connection newer than conn.
func (s *suite) reconnected(ctx context.Context, conn int64) (broker.ClientObservation, error) {
	return s.observe(ctx, "the device to reconnect", func(o broker.ClientObservation) (bool, string) {
		return o.Connected && o.Connection > conn, fmt.Sprintf("connected %v, connection %d, %d connect attempts", o.Connected, o.Connection, o.ConnectAttemptsTotal)
	})
}

func describeConn(o broker.ClientObservation) string {
	v := map[byte]string{3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5"}[o.ProtocolVersion]
	if v == "" {
		v = "MQTT protocol " + strconv.Itoa(int(o.ProtocolVersion))
	}
	sess := "persistent session"
	if o.CleanSession {
		sess = "clean session"
	}
	return fmt.Sprintf("%s, %s, keep-alive %ds", v, sess, o.KeepAliveS)
}

func (s *suite) connect(ctx context.Context) (string, error) {
	o, err := s.connected(ctx)
	if err != nil {
		return "", err
	}
	if o.ProtocolVersion != 4 && o.ProtocolVersion != 5 {
		return "", fmt.Errorf("connected with %s: AWS IoT takes MQTT 3.1.1 or 5", describeConn(o))
	}
	return fmt.Sprintf("connected over mutual TLS: %s, %d topic filters", describeConn(o), len(o.Subscriptions)), nil
}

// backoff drops the device and refuses BackoffRefusals CONNECTs
// (hanging up, as AWS does), measuring the intervals between the
// attempts; it repeats that until two rounds meet the criteria
// (JudgeBackoff), at most BackoffMaxRounds times.
func (s *suite) backoff(ctx context.Context, add func(broker.Fault) error) (string, [][]float64, error) {
	var rounds [][]time.Duration
	var judged error
	for i := range BackoffMaxRounds {
		o, err := s.connected(ctx)
		if err != nil {
			return "", secs(rounds), err
		}
		total0 := o.ConnectAttemptsTotal
		if err := add(broker.Fault{Kind: broker.FaultRefuseConnect, Count: BackoffRefusals}); err != nil {
			return "", secs(rounds), err
		}
		if err := add(broker.Fault{Kind: broker.FaultDisconnect, Count: 1}); err != nil {
			return "", secs(rounds), err
		}
		want := BackoffRefusals + 1
		o, err = s.observe(ctx, fmt.Sprintf("%d CONNECT attempts (%d refused, then one accepted)", want, BackoffRefusals), func(o broker.ClientObservation) (bool, string) {
			n := o.ConnectAttemptsTotal - total0
			return n >= int64(want) && o.Connected, fmt.Sprintf("%d attempts so far, connected %v", n, o.Connected)
		})
		if err != nil {
			return "", secs(rounds), fmt.Errorf("round %d: %w", i+1, err)
		}
		n := int(o.ConnectAttemptsTotal - total0)
		if n > len(o.ConnectAttempts) {
			return "", secs(rounds), fmt.Errorf("%d CONNECT attempts in one round, more than the %d the broker keeps: the device retries far too fast", n, len(o.ConnectAttempts))
		}
		att := o.ConnectAttempts[len(o.ConnectAttempts)-n:][:want]
		var iv []time.Duration
		for i := 1; i < len(att); i++ {
			iv = append(iv, att[i].Time.Sub(att[i-1].Time))
		}
		rounds = append(rounds, iv)
		if len(rounds) < 2 {
			continue
		}
		var detail string
		if detail, judged = JudgeBackoff(rounds); judged == nil {
			return detail, secs(rounds), nil
		}
	}
	return "", secs(rounds), judged
}

func secs(rounds [][]time.Duration) [][]float64 {
	var out [][]float64
	for _, r := range rounds {
		var row []float64
		for _, d := range r {
			row = append(row, math.Round(d.Seconds()*1000)/1000)
		}
		out = append(out, row)
	}
	return out
}

// JudgeBackoff applies the reconnect-backoff criteria to the intervals
// between CONNECT attempts, one slice per round (docs/qualify.md). Two
// rounds pass together when they show growth (the mean of the last three
// intervals of both at least GrowthFactor times the mean of their first
// two) and jitter (an interval that differs between them by more than
// JitterMin and JitterFrac of the longer). The device passes when any two
// of its rounds pass: full jitter now and then draws short delays all
// through a round, and the suite then measures another.
func JudgeBackoff(rounds [][]time.Duration) (string, error) {
	if len(rounds) < 2 {
		return "", fmt.Errorf("%d rounds measured, want at least 2", len(rounds))
	}
	for i, r := range rounds {
		if len(r) < 5 {
			return "", fmt.Errorf("round %d: %d intervals, want at least 5", i+1, len(r))
		}
	}
	var first error
	for j := range len(rounds) {
		for i := range j {
			detail, err := judgePair(rounds[i], rounds[j])
			if err == nil {
				return fmt.Sprintf("rounds %d and %d of %d: %s", i+1, j+1, len(rounds), detail), nil
			}
			if first == nil {
				first = err
			}
		}
	}
	if len(rounds) > 2 {
		return "", fmt.Errorf("%w; no two of %d rounds pass: %s", first, len(rounds), fmtRounds(rounds))
	}
	return "", first
}

func judgePair(a, b []time.Duration) (string, error) {
	early := []time.Duration{a[0], a[1], b[0], b[1]}
	late := append(append([]time.Duration{}, a[len(a)-3:]...), b[len(b)-3:]...)
	me, ml := mean(early), mean(late)
	ratio := 0.0
	if me > 0 {
		ratio = float64(ml) / float64(me)
	} else if ml > 0 {
		ratio = math.Inf(1)
	}
	jitter := false
	for k := range min(len(a), len(b)) {
		diff, long := a[k]-b[k], max(a[k], b[k])
		if diff < 0 {
			diff = -diff
		}
		if diff > JitterMin && float64(diff) > JitterFrac*float64(long) {
			jitter = true
			break
		}
	}
	desc := fmt.Sprintf("intervals %s; first two mean %s, last three mean %s (x%.1f)", fmtRounds([][]time.Duration{a, b}), me.Round(time.Millisecond), ml.Round(time.Millisecond), ratio)
	switch {
	case ratio < GrowthFactor:
		return "", fmt.Errorf("no backoff: %s, want x%.1f or more", desc, GrowthFactor)
	case !jitter:
		return "", fmt.Errorf("no jitter: the rounds' intervals are the same (%s)", desc)
	}
	return desc, nil
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func fmtRounds(rounds [][]time.Duration) string {
	var parts []string
	for _, r := range rounds {
		var p []string
		for _, d := range r {
			p = append(p, strconv.FormatFloat(d.Seconds(), 'f', 2, 64))
		}
		parts = append(parts, "["+strings.Join(p, " ")+"]s")
	}
	return strings.Join(parts, " ")
}

// settleTime is how long a connection must be up, with its filters
// subscribed, before a case starts (and the backoff case drops it again:
// a client may start its backoff from the shortest delay only once a
// connection held).
const settleTime = 2 * time.Second

// settled waits until the device has been connected for settleTime with
// every filter of subs subscribed.
func (s *suite) settled(ctx context.Context, subs []string) (broker.ClientObservation, error) {
	return s.observe(ctx, "the device to connect (and settle)", func(o broker.ClientObservation) (bool, string) {
		for _, f := range subs {
			if !slices.Contains(o.Subscriptions, f) {
				return false, "not subscribed to " + f
			}
		}
		if !o.Connected || o.ConnectedAt == nil {
			return false, "not connected"
		}
		up := time.Since(*o.ConnectedAt)
		return up >= settleTime, fmt.Sprintf("connected for %s", up.Round(time.Millisecond))
	})
}

// resubscribe drops the device with its session discarded (as after
// AWS's session expiry) and waits for its filters to come back.
func (s *suite) resubscribe(ctx context.Context, add func(broker.Fault) error) (string, error) {
	o, err := s.connected(ctx)
	if err != nil {
		return "", err
	}
	before := o.Subscriptions
	if len(before) == 0 {
		return "", errors.New("the device has no subscriptions to check")
	}
	if err := add(broker.Fault{Kind: broker.FaultExpireSession, Count: 1}); err != nil {
		return "", err
	}
	if err := add(broker.Fault{Kind: broker.FaultDisconnect, Count: 1}); err != nil {
		return "", err
	}
	if _, err := s.reconnected(ctx, o.Connection); err != nil {
		return "", err
	}
	start := time.Now()
	_, err = s.observe(ctx, "the device to subscribe again", func(n broker.ClientObservation) (bool, string) {
		var missing []string
		for _, f := range before {
			if !slices.Contains(n.Subscriptions, f) {
				missing = append(missing, f)
			}
		}
		return len(missing) == 0, fmt.Sprintf("missing %d of %d filters: %s", len(missing), len(before), strings.Join(missing, " "))
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d topic filters subscribed again on a new session %.1fs after the reconnect", len(before), time.Since(start).Seconds()), nil
}

// publishRetry withholds the PUBACK of the device's next QoS 1 PUBLISH
// (provoked by a desired-state change) and waits for the resend.
func (s *suite) publishRetry(ctx context.Context, add func(broker.Fault) error) (string, error) {
	o, err := s.connected(ctx)
	if err != nil {
		return "", err
	}
	total0 := o.PublishesTotal
	if err := add(broker.Fault{Kind: broker.FaultDrop, Packet: "puback", Topic: s.o.PublishTopic, Count: 1}); err != nil {
		return "", err
	}
	if s.o.PublishTopic == "" {
		if _, _, err := s.toggle(ctx); err != nil {
			return "", fmt.Errorf("provoke a publish: %w", err)
		}
	}
	var p broker.PacketSeen
	o, err = s.observe(ctx, "a QoS 1 PUBLISH from the device", func(o broker.ClientObservation) (bool, string) {
		for _, x := range newPackets(o.Publishes, o.PublishesTotal-total0) {
			if x.AckWithheld {
				p = x
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d PUBLISHes since, none QoS 1 matching %q", o.PublishesTotal-total0, s.o.PublishTopic)
	})
	if err != nil {
		return "", err
	}
	withheldAt := o.PublishesTotal
	resent := func(o broker.ClientObservation, sameConn bool) (broker.PacketSeen, bool) {
		for _, x := range newPackets(o.Publishes, o.PublishesTotal-withheldAt) {
			if x.Topic != p.Topic || x.PayloadHash != p.PayloadHash {
				continue
			}
			if sameConn && x.Connection == p.Connection && x.Dup && x.PacketID == p.PacketID {
				return x, true
			}
			if !sameConn && x.Connection > p.Connection {
				return x, true
			}
		}
		return broker.PacketSeen{}, false
	}
	gctx, cancel := context.WithTimeout(ctx, s.o.RetryGrace)
	o, err = s.observe(gctx, "a resend on the same connection", func(o broker.ClientObservation) (bool, string) {
		_, ok := resent(o, true)
		return ok, ""
	})
	cancel()
	if err == nil {
		return fmt.Sprintf("PUBLISH to %s (packet id %d) resent with DUP on the same connection", p.Topic, p.PacketID), nil
	}
	if ctx.Err() != nil {
		return "", err
	}
	// No resend while connected (MQTT 3.1.1 resends on reconnect): drop
	// the connection.
	if err := add(broker.Fault{Kind: broker.FaultDisconnect, Count: 1}); err != nil {
		return "", err
	}
	var x broker.PacketSeen
	_, err = s.observe(ctx, "the PUBLISH to be sent again after the reconnect", func(o broker.ClientObservation) (bool, string) {
		var ok bool
		x, ok = resent(o, false)
		return ok, fmt.Sprintf("connection %d, %d PUBLISHes since", o.Connection, o.PublishesTotal-withheldAt)
	})
	if err != nil {
		return "", fmt.Errorf("the PUBLISH to %s (packet id %d) whose PUBACK was withheld: %w", p.Topic, p.PacketID, err)
	}
	how := "with DUP and the same packet id"
	if !x.Dup || x.PacketID != p.PacketID {
		how = fmt.Sprintf("as a new message (packet id %d, DUP %v)", x.PacketID, x.Dup)
	}
	return fmt.Sprintf("PUBLISH to %s (packet id %d) not resent within %s on the same connection; resent after the reconnect %s", p.Topic, p.PacketID, s.o.RetryGrace, how), nil
}

// newPackets returns the last n of ps (the ones after a count taken
// earlier), or all of them when the ring has fewer.
func newPackets(ps []broker.PacketSeen, n int64) []broker.PacketSeen {
	if n <= 0 {
		return nil
	}
	if n > int64(len(ps)) {
		return ps
	}
	return ps[len(ps)-int(n):]
}

// persistent drops the device and keeps it offline while a message for
// one of its subscriptions is queued, then lets it back.
func (s *suite) persistent(ctx context.Context, add func(broker.Fault) error, letBack func() error) (string, error) {
	o, err := s.connected(ctx)
	if err != nil {
		return "", err
	}
	if o.CleanSession {
		return "", fmt.Errorf("the device connects with a clean session (%s): nothing to resume", describeConn(o))
	}
	delta := "$aws/things/" + s.o.Thing + "/shadow/update/delta"
	topic := ""
	for _, f := range o.Subscriptions {
		if broker.Match(f, delta) {
			topic = delta
			break
		}
	}
	if topic == "" {
		for _, f := range o.Subscriptions {
			if !strings.HasPrefix(f, "$") && !strings.ContainsAny(f, "+#") {
				topic = f
				break
			}
		}
	}
	if topic == "" {
		return "", fmt.Errorf("no subscription to queue a message on: the device subscribes neither %s nor a plain topic (%s)", delta, strings.Join(o.Subscriptions, " "))
	}
	if err := add(broker.Fault{Kind: broker.FaultRefuseConnect}); err != nil {
		return "", err
	}
	if err := add(broker.Fault{Kind: broker.FaultDisconnect, Count: 1}); err != nil {
		return "", err
	}
	if _, err := s.observe(ctx, "the device to be offline", func(n broker.ClientObservation) (bool, string) {
		return !n.Connected, "connected"
	}); err != nil {
		return "", err
	}
	if topic == delta {
		if _, _, err := s.toggle(ctx); err != nil {
			return "", fmt.Errorf("queue a delta: %w", err)
		}
	} else {
		q := url.Values{"qos": {"1"}}
		body := json.RawMessage(`{"iotsim":"qualify","case":"persistent-session"}`)
		if err := s.c.Call(ctx, "iotdata", http.MethodPost, "/topics/"+url.PathEscape(topic), q, body, nil); err != nil {
			return "", fmt.Errorf("queue a message on %s: %w", topic, err)
		}
	}
	queued, _ := s.observe(ctx, "the message to be queued", func(n broker.ClientObservation) (bool, string) {
		return n.Queued > 0, "nothing queued"
	})
	if err := letBack(); err != nil {
		return "", err
	}
	n, err := s.reconnected(ctx, o.Connection)
	if err != nil {
		return "", err
	}
	if !n.SessionPresent {
		return "", fmt.Errorf("CONNACK session present 0 on the reconnect (%s)", describeConn(n))
	}
	if n.CleanSession {
		return "", errors.New("the device reconnected with a clean session")
	}
	_, err = s.observe(ctx, "the queued message on "+topic, func(m broker.ClientObservation) (bool, string) {
		for _, d := range m.Deliveries {
			if d.Topic == topic && d.Connection >= n.Connection {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d deliveries, none on %s since the reconnect", m.DeliveriesTotal, topic)
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("session present on the reconnect; the message queued on %s while offline (%d in the session) was delivered", topic, queued.Queued), nil
}

// shadow changes the desired state and waits for the report.
func (s *suite) shadow(ctx context.Context) (string, error) {
	if _, err := s.connected(ctx); err != nil {
		return "", err
	}
	key, v, err := s.toggle(ctx)
	if err != nil {
		return "", err
	}
	start := time.Now()
	if err := s.awaitReported(ctx, key, v); err != nil {
		return "", err
	}
	return fmt.Sprintf("desired %s = %v reported back, delta cleared, in %.1fs", key, v, time.Since(start).Seconds()), nil
}

// toggle sets the desired value of the shadow key to the opposite of what
// the device reports.
func (s *suite) toggle(ctx context.Context) (key string, v bool, err error) {
	doc, err := s.c.GetThingShadow(ctx, s.o.Thing, "")
	if err != nil {
		return "", false, err
	}
	key, upd, v, err := Toggle(doc, s.o.ShadowKey)
	if err != nil {
		return "", false, err
	}
	if _, err := s.c.UpdateThingShadow(ctx, s.o.Thing, "", upd); err != nil {
		return "", false, err
	}
	return key, v, nil
}

func (s *suite) awaitReported(ctx context.Context, key string, v bool) error {
	state := ""
	t := time.NewTicker(s.o.Poll)
	defer t.Stop()
	for {
		doc, err := s.c.GetThingShadow(ctx, s.o.Thing, "")
		if err == nil {
			var sh shadowDoc
			if err = json.Unmarshal(doc, &sh); err == nil {
				rep, rok := lookup(sh.State.Reported, key)
				_, inDelta := lookup(sh.State.Delta, key)
				if rok && rep == v && !inDelta {
					return nil
				}
				state = fmt.Sprintf("reported %s = %v, in delta %v", key, rep, inDelta)
			}
		}
		if err != nil {
			state = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for the device to report %s = %v (%s)", key, v, state)
		case <-t.C:
		}
	}
}

type shadowDoc struct {
	State struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
		Delta    map[string]any `json:"delta"`
	} `json:"state"`
}

// Toggle reads a shadow document and returns the update that sets the
// desired value of key (a dotted path to a boolean) to the opposite of the
// reported one, and that value. With key "", the first boolean of the
// desired state (in sorted path order) is taken.
func Toggle(doc []byte, key string) (string, []byte, bool, error) {
	var sh shadowDoc
	if err := json.Unmarshal(doc, &sh); err != nil {
		return "", nil, false, fmt.Errorf("shadow document: %w", err)
	}
	if key == "" {
		paths := boolPaths(sh.State.Desired, "")
		if len(paths) == 0 {
			return "", nil, false, errors.New("the shadow's desired state has no boolean to change: name one the device accepts (--shadow-key, e.g. outputs.led)")
		}
		key = paths[0]
	}
	parts := strings.Split(key, ".")
	if slices.Contains(parts, "") || !utf8.ValidString(key) {
		return "", nil, false, fmt.Errorf("shadow key %q: want a dotted path such as outputs.led", key)
	}
	cur, ok := lookup(sh.State.Reported, key)
	if !ok {
		// Not reported yet: start from the desired value, if any.
		cur, _ = lookup(sh.State.Desired, key)
	}
	var leaf any = !cur
	for i := len(parts) - 1; i >= 0; i-- {
		leaf = map[string]any{parts[i]: leaf}
	}
	upd, err := json.Marshal(map[string]any{"state": map[string]any{"desired": leaf}})
	if err != nil {
		return "", nil, false, err
	}
	return key, upd, !cur, nil
}

// lookup returns the boolean at a dotted path; ok is false when it is
// absent or not a boolean.
func lookup(m map[string]any, key string) (v, ok bool) {
	var cur any = m
	for _, p := range strings.Split(key, ".") {
		mm, isMap := cur.(map[string]any)
		if !isMap {
			return false, false
		}
		if cur, ok = mm[p]; !ok {
			return false, false
		}
	}
	v, ok = cur.(bool)
	return v, ok
}

func boolPaths(m map[string]any, prefix string) []string {
	var out []string
	for k, v := range m {
		switch x := v.(type) {
		case bool:
			out = append(out, prefix+k)
		case map[string]any:
			out = append(out, boolPaths(x, prefix+k+".")...)
		}
	}
	sort.Strings(out)
	return out
}

func (s *suite) thingARN(ctx context.Context) (string, error) {
	var out struct {
		ThingARN string `json:"thingArn"`
	}
	err := s.c.Call(ctx, "iot", http.MethodGet, "/things/"+url.PathEscape(s.o.Thing), nil, nil, &out)
	return out.ThingARN, err
}

// jobs creates a job for the thing and waits for a terminal status.
func (s *suite) jobs(ctx context.Context) (string, error) {
	o, err := s.connected(ctx)
	if err != nil {
		return "", err
	}
	arn, err := s.thingARN(ctx)
	if err != nil {
		return "", err
	}
	s.jobSeq++
	id := fmt.Sprintf("iotsim-qualify-%d-%d", time.Now().Unix(), s.jobSeq)
	in := map[string]any{"targets": []string{arn}, "document": s.o.JobDocument, "description": "iotsim qualify: jobs case"}
	if strings.Contains(s.o.JobDocument, "${aws:iot:s3-presigned-url:") {
		in["presignedUrlConfig"] = map[string]any{"expiresInSec": 3600}
	}
	if err := s.c.Call(ctx, "iot", http.MethodPut, "/jobs/"+url.PathEscape(id), nil, in, nil); err != nil {
		return "", fmt.Errorf("create job %s: %w", id, err)
	}
	notify := "not subscribed to jobs/notify-next or jobs/notify"
	for _, f := range o.Subscriptions {
		for _, t := range []string{"notify-next", "notify"} {
			if broker.Match(f, "$aws/things/"+s.o.Thing+"/jobs/"+t) {
				notify = "subscribed to jobs/" + t
			}
		}
	}
	start := time.Now()
	var out struct {
		Execution struct {
			Status        string `json:"status"`
			StatusDetails struct {
				DetailsMap map[string]string `json:"detailsMap"`
			} `json:"statusDetails"`
		} `json:"execution"`
	}
	e := &out.Execution
	state := ""
	t := time.NewTicker(s.o.Poll)
	defer t.Stop()
	for {
		err := s.c.Call(ctx, "iot", http.MethodGet, "/things/"+url.PathEscape(s.o.Thing)+"/jobs/"+url.PathEscape(id), nil, nil, &out)
		if err == nil {
			state = e.Status
			switch e.Status {
			case "SUCCEEDED", "FAILED", "REJECTED":
				return fmt.Sprintf("job %s %s in %.1fs (%s; details %v)", id, e.Status, time.Since(start).Seconds(), notify, e.StatusDetails.DetailsMap), nil
			case "TIMED_OUT", "CANCELED", "REMOVED":
				return "", fmt.Errorf("job %s ended %s, not by the device (%s)", id, e.Status, notify)
			}
		} else {
			state = err.Error()
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("timed out waiting for job %s to end (status %s; %s)", id, state, notify)
		case <-t.C:
		}
	}
}

// keepAlive watches one connection for the window.
func (s *suite) keepAlive(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	o, err := s.connected(cctx)
	cancel()
	if err != nil {
		return "", err
	}
	if o.KeepAliveS == 0 {
		return "", errors.New("the device turned keep-alive off (0): AWS IoT then applies 1200 s, and a dead connection goes unnoticed")
	}
	ka := time.Duration(o.KeepAliveS) * time.Second
	limit := ka * 3 / 2
	window := max(s.o.KeepAliveWindow, limit)
	pings0 := o.PingReqs
	start := time.Now()
	var last broker.ClientObservation
	wctx, cancel := context.WithTimeout(ctx, window)
	_, err = s.observe(wctx, "", func(n broker.ClientObservation) (bool, string) {
		last = n
		return !n.Connected || n.Connection != o.Connection, ""
	})
	cancel()
	if err == nil { // the condition held: the connection ended
		return "", fmt.Errorf("the connection ended %.1fs into the %s window (keep-alive %s)", time.Since(start).Seconds(), window, ka)
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	if last.Connection != o.Connection {
		return "", errors.New("no observation during the window")
	}
	pings := last.PingReqs - pings0
	gap := time.Duration(last.MaxPacketGapMs) * time.Millisecond
	desc := fmt.Sprintf("connection kept %s: %d PINGREQs, longest silence %.1fs (limit 1.5 x keep-alive %s = %s)", window, pings, gap.Seconds(), ka, limit)
	if gap > limit {
		// MQTT: a client sends a PINGREQ when it has nothing else to send
		// within the keep-alive; the broker may close after 1.5 times it.
		return "", fmt.Errorf("silent too long: %s", desc)
	}
	return desc, nil
}

// Table writes the report as a table.
func (r Report) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CASE\tRESULT\tTIME\tDETAIL\n")
	for _, x := range r.Results {
		res := "PASS"
		if !x.Pass {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1fs\t%s\n", x.Case, res, x.Seconds, x.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s (client id %s): %d cases, %d passed, %d failed\n", r.Thing, r.ClientID, len(r.Results), r.Passed, r.Failed)
	return err
}
