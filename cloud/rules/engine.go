package rules

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/rules/sql"
	"github.com/iotagent/iotagent/cloud/store"
)

const bucket = "rules"

// IngestPrefix starts the Basic Ingest topics: $aws/rules/<rule>/<topic>
// goes to <rule> only, as <topic>.
const IngestPrefix = "$aws/rules/"

// Defaults for Options.
const (
	DefaultQueueSize   = 4096
	DefaultWorkers     = 4
	DefaultHTTPTimeout = 3 * time.Second // AWS's http action waits 3 s
)

// Options configure an Engine.
type Options struct {
	DB              *store.DB
	Region, Account string
	// Publish publishes a republish action's message on the broker.
	Publish func(topic string, payload []byte, qos byte) error
	// PutObject writes an s3 action's object into iotsim's object store.
	PutObject func(bucket, key string, body []byte) error
	// HTTPClient posts the http actions; nil means one with DefaultHTTPTimeout.
	HTTPClient *http.Client
	// AllowRemoteHTTP lets http actions post to hosts that are not
	// loopback (iotsim serve --rules-http-remote).
	AllowRemoteHTTP bool
	// QueueSize bounds the messages waiting for the workers; a message
	// that finds it full is dropped and counted.
	QueueSize int
	Workers   int
	Logger    *slog.Logger
	Now       func() time.Time
}

// Source says who published a message.
type Source struct {
	ClientID  string // "" when not over MQTT
	Principal string
}

// Engine stores topic rules and runs them. Create it with New, then Run.
type Engine struct {
	o   Options
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex // guards rules and writes to the database
	rules map[string]*entry

	// active are the enabled rules, read on the broker's hot path.
	active atomic.Pointer[[]*compiled]
	queue  chan job

	received, dropped atomic.Int64
	dropLog           logLimiter
}

type entry struct {
	rule Rule
	c    *compiled
}

// compiled is a rule ready to run, with its counters.
type compiled struct {
	name        string
	stmt        *sql.Statement
	filter      string
	actions     []*action
	errorAction *action
	stats       *stats
}

type action struct {
	kind     string // republish, http, s3
	resource string // the topic, URL or bucket, for the errorAction's message
	topic    *template
	qos      byte
	url      *template
	headers  []headerTemplate
	bucket   string
	key      *template
}

type headerTemplate struct {
	key   string
	value *template
}

type job struct {
	rules []*compiled
	msg   sql.Message
}

// Metrics are a rule's counters since iotsim started.
type Metrics struct {
	// Evaluated: messages whose topic matched the rule's FROM (or its
	// Basic Ingest topic) and that reached a worker.
	Evaluated int64 `json:"evaluated"`
	// Matched: those whose WHERE held, so the actions ran.
	Matched int64 `json:"matched"`
	// SQLErrors: evaluations that failed.
	SQLErrors         int64 `json:"sqlErrors"`
	ActionsSucceeded  int64 `json:"actionsSucceeded"`
	ActionsFailed     int64 `json:"actionsFailed"`
	ErrorActionsRun   int64 `json:"errorActionsSucceeded"`
	ErrorActionFailed int64 `json:"errorActionsFailed"`
	// Dropped: messages for this rule dropped because the queue was full.
	Dropped int64 `json:"dropped"`
	// LastFailure is the last action failure, "" if none.
	LastFailure string `json:"lastFailure,omitempty"`
}

type stats struct {
	evaluated, matched, sqlErrors                      atomic.Int64
	actionsOK, actionsFailed, errorActOK, errorActFail atomic.Int64
	dropped                                            atomic.Int64
	lastFailure                                        atomic.Pointer[string]
	failLog                                            logLimiter
}

func (s *stats) snapshot() Metrics {
	m := Metrics{
		Evaluated: s.evaluated.Load(), Matched: s.matched.Load(), SQLErrors: s.sqlErrors.Load(),
		ActionsSucceeded: s.actionsOK.Load(), ActionsFailed: s.actionsFailed.Load(),
		ErrorActionsRun: s.errorActOK.Load(), ErrorActionFailed: s.errorActFail.Load(), Dropped: s.dropped.Load(),
	}
	if p := s.lastFailure.Load(); p != nil {
		m.LastFailure = *p
	}
	return m
}

// EngineMetrics are the engine's counters: the queue's and each rule's.
type EngineMetrics struct {
	// Received: messages that matched at least one enabled rule.
	Received int64 `json:"received"`
	// Dropped: those dropped because the queue was full.
	Dropped   int64              `json:"dropped"`
	QueueSize int                `json:"queueSize"`
	Queued    int                `json:"queued"`
	Rules     map[string]Metrics `json:"rules"`
}

// New loads the stored rules. It starts no goroutines.
func New(o Options) (*Engine, error) {
	if o.DB == nil || o.Publish == nil {
		return nil, errors.New("rules: DB and Publish are required")
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &Engine{o: o, log: o.Logger, now: o.Now, rules: map[string]*entry{}, queue: make(chan job, o.QueueSize)}
	var bad []string
	err := o.DB.ForEach(bucket, "", func(name string, v []byte) error {
		var r Rule
		if err := json.Unmarshal(v, &r); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", name, err))
			return nil
		}
		c, err := compile(r.Name, r.Payload, o.AllowRemoteHTTP)
		if err != nil {
			// Kept, and listed, but not run: the user sees it and can replace it.
			bad = append(bad, fmt.Sprintf("%s: %v", name, err))
			c = nil
		} else {
			c.stats = &stats{}
		}
		e.rules[r.Name] = &entry{rule: r, c: c}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	for _, b := range bad {
		e.log.Warn("stored rule not run: replace or delete it", "rule", b)
	}
	e.publishActive()
	if len(e.rules) > 0 {
		e.log.Info("topic rules loaded", "rules", len(e.rules), "enabled", len(*e.active.Load()))
	}
	return e, nil
}

// publishActive rebuilds the list the hot path reads; mu held or at New.
func (e *Engine) publishActive() {
	var act []*compiled
	for _, name := range slices.Sorted(maps.Keys(e.rules)) {
		en := e.rules[name]
		if en.c != nil && !en.rule.RuleDisabled {
			act = append(act, en.c)
		}
	}
	e.active.Store(&act)
}

// HandleMessage routes one published message to the rules whose topic
// filter matches (or, for a Basic Ingest topic, to its rule). It never
// blocks: the message is queued for the workers, or dropped and counted
// when the queue is full. It reports whether topic is a Basic Ingest
// topic, which the broker then does not deliver to subscribers.
func (e *Engine) HandleMessage(src Source, topic string, payload []byte) (ingest bool) {
	act := *e.active.Load()
	if rest, ok := strings.CutPrefix(topic, IngestPrefix); ok {
		name, sub, _ := strings.Cut(rest, "/")
		for _, c := range act {
			if c.name == name {
				e.enqueue([]*compiled{c}, src, sub, payload)
				return true
			}
		}
		e.log.Debug("basic ingest message for no enabled rule", "topic", topic)
		return true
	}
	if len(act) == 0 {
		return false
	}
	var match []*compiled
	for _, c := range act {
		if broker.Match(c.filter, topic) {
			match = append(match, c)
		}
	}
	if len(match) > 0 {
		e.enqueue(match, src, topic, payload)
	}
	return false
}

func (e *Engine) enqueue(rs []*compiled, src Source, topic string, payload []byte) {
	e.received.Add(1)
	j := job{rules: rs, msg: sql.Message{
		Topic: topic, Payload: bytes.Clone(payload), ClientID: src.ClientID, Principal: src.Principal, Time: e.now(),
	}}
	select {
	case e.queue <- j:
	default:
		n := e.dropped.Add(1)
		names := make([]string, len(rs))
		for i, c := range rs {
			c.stats.dropped.Add(1)
			names[i] = c.name
		}
		if ok, suppressed := e.dropLog.allow(e.now()); ok {
			e.log.Warn("rules queue full: message dropped", "topic", topic, "rules", names,
				"dropped_total", n, "queue_size", cap(e.queue), "suppressed", suppressed)
		}
	}
}

// Run runs the workers until ctx ends and returns once they have
// stopped, logging the engine's totals (and how many queued messages
// were left unprocessed).
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range e.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-e.queue:
					e.process(ctx, j)
				}
			}
		}()
	}
	wg.Wait()
	m := e.Metrics()
	var failed int64
	for _, r := range m.Rules {
		failed += r.ActionsFailed
	}
	e.log.Info("rules engine stopped", "received", m.Received, "dropped", m.Dropped,
		"queued_unprocessed", len(e.queue), "actions_failed", failed)
	return nil
}

// process evaluates a message against its rules and runs their actions.
func (e *Engine) process(ctx context.Context, j job) {
	for _, c := range j.rules {
		c.stats.evaluated.Add(1)
		res, err := c.stmt.Eval(&j.msg)
		if err != nil {
			c.stats.sqlErrors.Add(1)
			e.log.Warn("rule evaluation failed", "rule", c.name, "topic", j.msg.Topic, "err", err)
			continue
		}
		if !res.Matched {
			continue
		}
		c.stats.matched.Add(1)
		var failures []failure
		for _, a := range c.actions {
			if err := e.run(ctx, a, &j.msg, res.Payload); err != nil {
				c.stats.actionsFailed.Add(1)
				f := failure{Action: actionName(a.kind), Resource: a.resource, Message: err.Error()}
				failures = append(failures, f)
				msg := fmt.Sprintf("%s %s: %v", a.kind, a.resource, err)
				c.stats.lastFailure.Store(&msg)
				if ok, suppressed := c.stats.failLog.allow(e.now()); ok {
					e.log.Warn("rule action failed", "rule", c.name, "action", a.kind, "resource", a.resource,
						"topic", j.msg.Topic, "err", err, "failed_total", c.stats.actionsFailed.Load(), "suppressed", suppressed)
				}
				continue
			}
			c.stats.actionsOK.Add(1)
		}
		if len(failures) > 0 && c.errorAction != nil {
			e.runErrorAction(ctx, c, &j.msg, failures)
		}
	}
}

type failure struct {
	Action   string `json:"failedAction"`
	Resource string `json:"failedResource"`
	Message  string `json:"errorMessage"`
}

func actionName(kind string) string {
	switch kind {
	case "republish":
		return "RepublishAction"
	case "http":
		return "HttpAction"
	case "s3":
		return "S3Action"
	}
	return kind
}

// runErrorAction sends AWS's error message (the rule, the topic, the
// original payload in base64, the failures) through the errorAction.
func (e *Engine) runErrorAction(ctx context.Context, c *compiled, m *sql.Message, failures []failure) {
	body, _ := json.Marshal(struct {
		RuleName      string    `json:"ruleName"`
		Topic         string    `json:"topic"`
		TraceID       string    `json:"cloudwatchTraceId"`
		ClientID      string    `json:"clientId"`
		Base64Payload string    `json:"base64OriginalPayload"`
		Failures      []failure `json:"failures"`
	}{c.name, m.Topic, newTraceID(), m.ClientID, base64.StdEncoding.EncodeToString(m.Payload), failures})
	if err := e.run(ctx, c.errorAction, m, body); err != nil {
		c.stats.errorActFail.Add(1)
		e.log.Warn("rule error action failed: the failure is lost", "rule", c.name, "action", c.errorAction.kind,
			"resource", c.errorAction.resource, "err", err, "error_action_failed_total", c.stats.errorActFail.Load())
		return
	}
	c.stats.errorActOK.Add(1)
}

// run performs one action with the rule's result as the message.
func (e *Engine) run(ctx context.Context, a *action, m *sql.Message, payload []byte) error {
	switch a.kind {
	case "republish":
		topic := a.topic.render(m)
		if err := broker.CheckTopicName(topic); err != nil {
			return fmt.Errorf("republish to %q: %w", topic, err)
		}
		return e.o.Publish(topic, payload, a.qos)
	case "http":
		return e.post(ctx, a, m, payload)
	case "s3":
		if e.o.PutObject == nil {
			return errors.New("no object store")
		}
		key := a.key.render(m)
		if key == "" {
			return fmt.Errorf("the key template %q is empty for this message", a.resource)
		}
		return e.o.PutObject(a.bucket, key, payload)
	}
	return fmt.Errorf("unknown action %s", a.kind)
}

func (e *Engine) post(ctx context.Context, a *action, m *sql.Message, payload []byte) error {
	u := a.url.render(m)
	if err := checkURL(u, e.o.AllowRemoteHTTP); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("http request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "iotsim-rules")
	for _, h := range a.headers {
		req.Header.Set(h.key, h.value.render(m))
	}
	resp, err := e.o.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", u, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post %s: %s", u, resp.Status)
	}
	return nil
}

func (e *Engine) arn(name string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:rule/%s", e.o.Region, e.o.Account, name)
}

// Create stores a new rule.
func (e *Engine) Create(name string, p Payload) (Rule, error) {
	c, err := compile(name, p, e.o.AllowRemoteHTTP)
	if err != nil {
		return Rule{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.rules[name]; ok {
		return Rule{}, fmt.Errorf("rule %s: %w", name, ErrExists)
	}
	if p.AWSIoTSQLVersion == "" {
		p.AWSIoTSQLVersion = SQLVersion2015 // AWS's default
	}
	r := Rule{Name: name, ARN: e.arn(name), CreatedAt: e.now().UTC().Truncate(time.Millisecond), Payload: p}
	c.stats = &stats{}
	if err := e.putLocked(r, c); err != nil {
		return Rule{}, err
	}
	if p.AWSIoTSQLVersion != SQLVersion2016 {
		e.log.Info("iotsim evaluates every rule as SQL version "+SQLVersion2016, "rule", name, "aws_iot_sql_version", p.AWSIoTSQLVersion)
	}
	return r, nil
}

func (e *Engine) putLocked(r Rule, c *compiled) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rule %s: %w", r.Name, err)
	}
	if err := e.o.DB.Put(bucket, r.Name, b); err != nil {
		return fmt.Errorf("store rule %s: %w", r.Name, err)
	}
	e.rules[r.Name] = &entry{rule: r, c: c}
	e.publishActive()
	return nil
}

// Get returns a rule.
func (e *Engine) Get(name string) (Rule, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.rules[name]
	if !ok {
		return Rule{}, fmt.Errorf("rule %s: %w", name, ErrNotFound)
	}
	return en.rule, nil
}

// List returns every rule, by name.
func (e *Engine) List() []Rule {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Rule, 0, len(e.rules))
	for _, en := range e.rules {
		out = append(out, en.rule)
	}
	slices.SortFunc(out, func(a, b Rule) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Replace replaces a rule's payload; its counters start again.
func (e *Engine) Replace(name string, p Payload) error {
	c, err := compile(name, p, e.o.AllowRemoteHTTP)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.rules[name]
	if !ok {
		return fmt.Errorf("rule %s: %w", name, ErrNotFound)
	}
	if p.AWSIoTSQLVersion == "" {
		p.AWSIoTSQLVersion = SQLVersion2015
	}
	r := en.rule
	r.Payload = p
	c.stats = &stats{}
	return e.putLocked(r, c)
}

// Delete removes a rule.
func (e *Engine) Delete(name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.rules[name]; !ok {
		return fmt.Errorf("rule %s: %w", name, ErrNotFound)
	}
	if err := e.o.DB.Delete(bucket, name); err != nil {
		return fmt.Errorf("delete rule %s: %w", name, err)
	}
	delete(e.rules, name)
	e.publishActive()
	return nil
}

// SetDisabled enables or disables a rule.
func (e *Engine) SetDisabled(name string, disabled bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.rules[name]
	if !ok {
		return fmt.Errorf("rule %s: %w", name, ErrNotFound)
	}
	r := en.rule
	r.RuleDisabled = disabled
	return e.putLocked(r, en.c)
}

// QueueLen is the number of messages waiting for the workers.
func (e *Engine) QueueLen() int { return len(e.queue) }

// Metrics returns the engine's counters.
func (e *Engine) Metrics() EngineMetrics {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := EngineMetrics{Received: e.received.Load(), Dropped: e.dropped.Load(), QueueSize: cap(e.queue),
		Queued: len(e.queue), Rules: map[string]Metrics{}}
	for name, en := range e.rules {
		if en.c != nil {
			m.Rules[name] = en.c.stats.snapshot()
		}
	}
	return m
}

// logLimiter lets one log record a second through and counts the rest.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int64
}

func (l *logLimiter) allow(now time.Time) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < time.Second {
		l.suppressed++
		return false, 0
	}
	l.last = now
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

func newTraceID() string { return sql.NewUUID() }
