package agent

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/defender"
	"github.com/iotagent/iotagent/agent/outbox"
	"github.com/iotagent/iotagent/agent/rotate"
	"github.com/iotagent/iotagent/agent/shadow"
	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/sensors"
)

// Options carries what the agent takes from its caller rather than from
// the config file.
type Options struct {
	Logger  *slog.Logger
	Level   *slog.LevelVar // the cloud's log.level lands here; may be nil
	Version string
	Now     func() time.Time
	// Hardware replaces the sensors that the config would open; tests and
	// the simulated profile use it. Nil: built from cfg.Sensors by Open.
	Hardware *Hardware
	// StartupProblem is shown as the last error until something else
	// happens (e.g. a boot-partition configuration that was refused).
	StartupProblem string
	// DefenderFirstDelay is the wait before the first Device Defender
	// report; 0 means the reporter's default. Tests shorten it.
	DefenderFirstDelay time.Duration
	// AuthBackoffMin is the first wait after the broker closed the
	// connection right after a packet (an IoT policy that denies it); 0
	// means the transport's default (5 s). Tests shorten it.
	AuthBackoffMin time.Duration
	// AckTimeout is how long a PUBLISH or SUBSCRIBE waits for the
	// broker's acknowledgement; 0 means the config's mqtt.ack_timeout_s.
	// Tests of lost acknowledgements shorten it.
	AckTimeout time.Duration
}

// Hardware is the device's opened parts, by part name (OpenHardware
// builds it from the config's parts).
type Hardware struct {
	Inputs   map[string]sensors.Input
	Samplers map[string]sensors.Sampler
	Outputs  map[string]sensors.Output
	// Motion, Contact and Env are the chocolate box's parts for a caller
	// that builds its hardware by hand (tests): each is the part of its
	// Name(), described by the config's part of that name or else as the
	// chocolate box's (config.ChocolateBoxPart). Nil: absent.
	Motion  sensors.Input
	Contact sensors.Input
	Env     sensors.Sensor
	// Run does background work the parts need (feeding simulated sensors)
	// until ctx ends; may be nil.
	Run func(ctx context.Context) error
	// Close releases what OpenHardware acquired; may be nil.
	Close func() error
	// Log gets a warning for each line written to a simulated part's
	// named pipe that is not understood (not a level or a number, a
	// reading the part does not have, a value it could not report); nil
	// means slog.Default(). The agent sets its own before Run.
	Log *slog.Logger
}

// simRejected reports a line of a simulated part's named pipe that was not
// applied.
func (hw *Hardware) simRejected(fifo, line string, err error) {
	log := hw.Log
	if log == nil {
		log = slog.Default()
	}
	log.Warn("simulated part: line ignored", "fifo", fifo, "line", line, "err", err)
}

// Agent is the device daemon. Build it with New and start it with Run.
type Agent struct {
	cfg  config.Config
	opt  Options
	log  *slog.Logger
	now  func() time.Time
	hw   *Hardware
	ob   *outbox.Outbox
	tr   *transport.Client
	dr   *defender.Reporter // nil unless defender.enabled
	sh   *shadow.Client
	db   *bolt.DB
	tick chan struct{} // a settings change that the main loop must see

	roots    *x509.CertPool
	rotating sync.Mutex      // one certificate rotation at a time
	leafKeys *rotate.TPMKeys // TPM keys of a rotation done in this run

	connected   chan struct{} // a (re)connect: resync the shadow
	dirty       chan struct{} // reported state changed
	synced      chan struct{} // closed after the first shadow sync
	syncOnce    sync.Once
	heartbeat   atomic.Int64 // unix ns of the main loop's last turn
	envSince    atomic.Int64 // unix ns the telemetry loop's read under way began; 0: none
	sampleSince atomic.Int64 // unix ns the sample loop's read under way began; 0: none

	parts      []*runPart          // the device's parts but outputs, by name; set by Run
	partByName map[string]*runPart // the same
	countDirty chan struct{}       // a counter input counted: persist
	sampled    chan struct{}       // closed after the sample loop's first round

	mu      sync.Mutex
	st      deviceState
	leaf    *x509.Certificate // the device certificate in use; guarded by mu
	running struct {          // what Status reads; set once Run has opened it
		tr *transport.Client
		ob *outbox.Outbox
		dr *defender.Reporter
	}
	recovery recoveryState // the state journal's events; see recovery.go
	api      apiState      // the local API's view; see introspect.go
	jobs     jobsState     // the jobs runner and OTA updater; see jobs.go
}

func (a *Agent) transport() *transport.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running.tr
}

func (a *Agent) box() *outbox.Outbox {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running.ob
}

// deviceState is what the agent knows and reports; guarded by Agent.mu.
type deviceState struct {
	Settings
	AlarmOn    bool
	LastAlarm  int64
	LastSensor string
	Parts      map[string]*partState // by part name
	LastError  string
	ReadErrors uint64
	Events     uint64
	// OldCertificateID is the certificate a rotation replaced, reported
	// so that it can be deactivated.
	OldCertificateID string
	desiredErrs      []string
	// limitErrs are the limits dropped once a part's readings were known
	// (learnReadings): shown in last_error until the agent restarts.
	limitErrs []string
}

// New checks the configuration and prepares the agent. It opens nothing
// and starts nothing: Run does.
func New(cfg config.Config, opt Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Version == "" {
		opt.Version = "dev"
	}
	a := &Agent{
		cfg: cfg, opt: opt, log: opt.Logger, now: opt.Now,
		tick:      make(chan struct{}, 1),
		connected: make(chan struct{}, 1),
		dirty:     make(chan struct{}, 1),
		synced:    make(chan struct{}),

		countDirty: make(chan struct{}, 1),
		sampled:    make(chan struct{}),
	}
	a.st.Settings = Settings{
		Armed:     cfg.Alarm.Armed,
		IntervalS: cfg.Telemetry.IntervalS,
		LogLevel:  cfg.Log.Level,
		Outputs:   map[string]bool{},
		Sensors:   map[string]*PartSettings{},

		DefenderIntervalS: cfg.Defender.IntervalS,
	}
	a.st.LastError = opt.StartupProblem
	for _, p := range cfg.DeviceParts() {
		if p.Type == config.TypeOutput {
			a.st.Outputs[p.Name] = false
		} else {
			a.st.Sensors[p.Name] = newPartSettings(p)
		}
	}
	if cfg.Legacy() {
		opt.Logger.Warn("deprecated config: the \"sensors\" section is read as the chocolate box's parts; describe the device in \"parts\" (see the migration in README.md)")
	}
	return a, nil
}

// Run starts the agent and blocks until ctx ends or a part fails for
// good. It returns only after every goroutine it started has exited.
func (a *Agent) Run(ctx context.Context) (err error) {
	if err := a.adoptIdentity(); err != nil {
		return err
	}
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	a.db, _, err = openStateDB(a.cfg.StateDir, filepath.Join(a.cfg.StateDir, "agent.db"), a.now())
	if err != nil {
		return fmt.Errorf("open state: %w", err)
	}
	defer a.db.Close()
	a.refreshRecoveries(true)

	a.ob, err = outbox.Open(a.db, outbox.Options{MaxMessages: a.cfg.Outbox.MaxMessages, MaxBytes: a.cfg.Outbox.MaxBytes,
		MemoryMessages: a.cfg.Outbox.MemoryMessages}, a.now)
	if err != nil {
		return fmt.Errorf("open outbox: %w", err)
	}
	ks, tlsCert, err := a.openIdentity(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() { // after every goroutine that signs has stopped
		ks.Close()
		if a.leafKeys != nil {
			a.leafKeys.Close()
		}
	}()
	a.hw = a.opt.Hardware
	if a.hw == nil {
		if a.hw, err = OpenHardware(a.cfg); err != nil {
			return err
		}
	}
	if a.hw.Close != nil {
		defer a.hw.Close()
	}
	if a.hw.Outputs == nil {
		a.hw.Outputs = map[string]sensors.Output{}
	}
	a.setupParts()
	if err := a.loadCounts(); err != nil {
		return fmt.Errorf("load counters: %w", err)
	}

	a.tr, err = transport.New(transport.Options{
		Broker:         net.JoinHostPort(a.cfg.MQTT.Endpoint, strconv.Itoa(a.cfg.MQTT.Port)),
		ServerName:     a.cfg.MQTT.TLSServerName(),
		ALPN:           a.cfg.MQTT.ALPN,
		RootCAs:        a.roots,
		Certificate:    tlsCert,
		ClientID:       a.cfg.ThingName,
		KeepAlive:      time.Duration(a.cfg.MQTT.KeepAliveS) * time.Second,
		ConnectTimeout: time.Duration(a.cfg.MQTT.ConnectTimeoutS) * time.Second,
		CleanSession:   a.cfg.MQTT.CleanSession,
		BackoffMax:     time.Duration(a.cfg.MQTT.BackoffMaxS) * time.Second,
		AuthBackoffMin: a.opt.AuthBackoffMin,
		AckTimeout:     cmp.Or(a.opt.AckTimeout, time.Duration(a.cfg.MQTT.AckTimeoutS)*time.Second),
		Outbox:         a.ob,
		OnQuarantine:   a.onQuarantine,
		Logger:         a.log,
		OnConnect:      func(context.Context) { signal(a.connected); a.kickJobs() },
	})
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	if a.cfg.Defender.Enabled {
		if a.dr, err = a.newDefender(); err != nil {
			return err
		}
	}
	if err := a.newJobs(); err != nil {
		return err
	}
	a.mu.Lock()
	a.running.tr, a.running.ob, a.running.dr = a.tr, a.ob, a.dr
	a.mu.Unlock()
	a.sh = shadow.New(a.tr, a.cfg.ThingName, "")
	if err := a.sh.Subscribe(); err != nil {
		return err
	}
	a.applyOutputs()
	a.refreshRecoveries(false) // what opening the identity, jobs and Defender recovered

	a.log.Info("agent starting", "thing", a.cfg.ThingName, "endpoint", a.cfg.MQTT.Endpoint, "port", a.cfg.MQTT.Port,
		"version", a.opt.Version, "outbox_queued", a.ob.Stats().Len)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.tr.Run(ctx) })
	g.Go(func() error { return a.ob.Run(ctx) })
	g.Go(func() error { a.watchOutbox(ctx); return nil })
	if a.dr != nil {
		g.Go(func() error {
			// The first report waits for the connection, not just the clock.
			select {
			case <-ctx.Done():
				return nil
			case <-a.synced:
			}
			return a.dr.Run(ctx)
		})
	}
	g.Go(func() error { return a.runJobs(ctx) }) // once the shadow has synced
	if a.hw.Run != nil {
		if a.hw.Log == nil {
			a.hw.Log = a.log
		}
		g.Go(func() error { return a.hw.Run(ctx) })
	}
	events := make(chan sensors.Event, 16)
	for _, p := range a.parts {
		if p.in != nil {
			g.Go(func() error { a.watch(ctx, p.in, events); return nil })
		}
	}
	g.Go(func() error { a.sampleLoop(ctx); return nil })
	g.Go(func() error { a.counterLoop(ctx); return nil })
	g.Go(func() error { a.syncLoop(ctx); return nil })
	g.Go(func() error { a.rotationLoop(ctx); return nil })
	g.Go(func() error { a.mainLoop(ctx, events); return nil })
	g.Go(func() error { a.telemetryLoop(ctx); return nil })
	if a.cfg.LocalAPI.Enabled {
		g.Go(func() error { a.serveLocalAPI(ctx); return nil })
	}
	if os.Getenv("NOTIFY_SOCKET") != "" {
		g.Go(func() error { a.notifyLoop(ctx); return nil })
	}
	err = g.Wait()
	a.stopPartTimers()
	if !errors.Is(err, errRestart) {
		return err
	}
	return nil // exit 0: the supervisor starts the agent again (see jobs.go)
}

// Status is a snapshot of the agent for tests and, later, the local API.
type Status struct {
	Connected bool
	Outbox    outbox.Stats
	Armed     bool
	AlarmOn   bool
	Events    uint64          // input events handled since start
	Defender  *defender.Stats // nil unless Device Defender is enabled
}

// Status returns a snapshot; it is safe to call while Run runs, and
// returns the zero Status before Run has opened the state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	st := Status{Armed: a.st.Armed, AlarmOn: a.st.AlarmOn, Events: a.st.Events}
	a.mu.Unlock()
	if tr, ob := a.transport(), a.box(); tr != nil && ob != nil {
		st.Connected = tr.Connected()
		st.Outbox = ob.Stats()
	}
	a.mu.Lock()
	dr := a.running.dr
	a.mu.Unlock()
	if dr != nil {
		ds := dr.Stats()
		st.Defender = &ds
	}
	return st
}

// watch runs one input's watcher. A failing input does not stop the
// agent: the error is reported and the watcher starts again.
func (a *Agent) watch(ctx context.Context, in sensors.Input, events chan<- sensors.Event) {
	for {
		err := in.Watch(ctx, events)
		if ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		a.st.ReadErrors++
		a.st.LastError = fmt.Sprintf("watch %s: %v", in.Name(), err)
		a.mu.Unlock()
		signal(a.dirty)
		a.log.Warn("input failed; retrying in 5s", "sensor", in.Name(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// signal does a non-blocking send on a wake-up channel of capacity 1.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// mainLoop turns input events into alarms, and does nothing else: an
// alarm must not wait behind the environment read (a forced-mode BME280
// measurement takes about 26 ms), which telemetryLoop does.
func (a *Agent) mainLoop(ctx context.Context, events <-chan sensors.Event) {
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	for {
		a.beat(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if a.refreshRecoveries(false) {
				signal(a.dirty) // a part of the agent recovered a state file
			}
		case ev := <-events:
			a.onInput(ev)
		}
	}
}

// beat records a turn of the main loop, unless the environment read has
// been under way for longer than heartbeatEvery: a hung sensor still stops
// the heartbeat (and so fails the health check), as it did when the read
// ran on the main loop.
func (a *Agent) beat(now time.Time) {
	for _, s := range []*atomic.Int64{&a.envSince, &a.sampleSince} {
		if since := s.Load(); since != 0 && now.Sub(time.Unix(0, since)) > heartbeatEvery {
			return
		}
	}
	a.heartbeat.Store(now.UnixNano())
}

// telemetryLoop reads the environment and queues telemetry at once and
// then every interval.
func (a *Agent) telemetryLoop(ctx context.Context) {
	select { // the parts with an interval of their own have been read once
	case <-ctx.Done():
		return
	case <-a.sampled:
	}
	interval := a.interval()
	t := time.NewTicker(interval)
	defer t.Stop()
	a.telemetry(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.telemetry(ctx)
		case <-a.tick:
			if iv := a.interval(); iv != interval {
				interval = iv
				t.Reset(iv)
			}
		}
	}
}

func (a *Agent) interval() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return time.Duration(a.st.IntervalS) * time.Second
}

// telemetry reads the parts read with telemetry and queues a telemetry
// message of every part's readings. It queues nothing once ctx has ended.
func (a *Agent) telemetry(ctx context.Context) {
	for _, p := range a.parts {
		if p.withTelemetry() {
			a.readPart(ctx, p, &a.envSince)
		}
	}
	if ctx.Err() != nil {
		return
	}
	now := a.now()
	msg := map[string]any{"thing": a.cfg.ThingName, "timestamp": now.Unix()}
	a.mu.Lock()
	msg["armed"], msg["alarm"], msg["sensors"] = a.st.Armed, onOff(a.st.AlarmOn), a.partsReport(true, now)
	a.mu.Unlock()
	a.enqueue(a.cfg.Topic(a.cfg.Topics.Telemetry), outbox.Telemetry, msg)
	signal(a.dirty)
}

// enqueue queues a QoS1 message in the outbox. When the outbox is full it
// drops the oldest telemetry; a drop is logged and reported.
func (a *Agent) enqueue(topic string, class outbox.Class, msg map[string]any) {
	b, err := json.Marshal(msg)
	if err == nil {
		before := a.ob.Stats().Dropped
		_, err = a.ob.Append(topic, b, class)
		if st := a.ob.Stats(); st.Dropped != before {
			a.log.Warn("outbox full: dropped queued messages", "dropped_total", st.Dropped,
				"dropped_telemetry", st.DroppedTelemetry, "dropped_warnings", st.DroppedWarning, "dropped_alarms", st.DroppedAlarm,
				"queued", st.Len, "in_memory", st.Memory)
			signal(a.dirty)
		}
	}
	if err != nil {
		a.log.Error("queue message", "topic", topic, "err", err)
	}
}

// syncLoop owns the shadow: a full resync on every (re)connect, deltas
// applied as they come, and a report whenever the reported state changes.
func (a *Agent) syncLoop(ctx context.Context) {
	var last map[string]any // last reported document the shadow accepted
	var retry <-chan time.Time
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-a.connected:
			last, err = a.resync(ctx)
		case <-retry:
			last, err = a.resync(ctx)
		case d := <-a.sh.Deltas():
			a.applyDesired(d.State)
			last, err = a.report(ctx, last)
		case <-a.dirty:
			last, err = a.report(ctx, last)
		}
		retry = nil
		switch {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, shadow.ErrConflict):
			// desired moved under the report: get it and report again now
			signal(a.connected)
		case errors.Is(err, transport.ErrNotConnected):
			// the next connect resyncs
		default:
			a.log.Warn("shadow sync failed; retrying in 5s", "err", err)
			retry = time.After(5 * time.Second)
		}
		if err != nil {
			last = nil // unknown what the shadow holds: the next report goes out whole
		}
	}
}

const syncTimeout = 10 * time.Second

// resync gets the shadow, applies desired and reports; on a version
// conflict it starts again (a few times: desired is moving under it).
func (a *Agent) resync(ctx context.Context) (map[string]any, error) {
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, syncTimeout)
		doc, err := a.sh.Get(rctx)
		cancel()
		var shadowReported map[string]any
		switch {
		case errors.Is(err, shadow.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			a.applyDesired(doc.State.Desired)
			shadowReported = doc.State.Reported
		}
		last, err := a.report(ctx, shadowReported)
		if errors.Is(err, shadow.ErrConflict) && attempt < 4 {
			continue
		}
		if err == nil {
			a.log.Info("shadow synced", "version", a.sh.Version())
			a.syncOnce.Do(func() { close(a.synced) })
		}
		return last, err
	}
}

// report sends the reported state if it differs from last, as a
// conditional update on the last version seen.
func (a *Agent) report(ctx context.Context, last map[string]any) (map[string]any, error) {
	cur := a.reported()
	if last != nil && sameReport(cur, last) {
		return last, nil
	}
	rctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	_, err := a.sh.Update(rctx, shadow.State{Reported: cur}, a.sh.Version())
	if err != nil {
		return last, err
	}
	return cur, nil
}

// applyDesired applies desired state to the device and records problems.
func (a *Agent) applyDesired(desired map[string]any) {
	if desired == nil {
		return
	}
	a.mu.Lock()
	changed, problems := a.st.ApplyDesired(desired)
	a.st.desiredErrs = problems
	level := a.st.LogLevel
	a.mu.Unlock()
	for _, p := range problems {
		a.log.Warn("desired state not applied", "problem", p)
	}
	if len(changed) == 0 {
		return
	}
	a.log.Info("desired state applied", "changed", changed)
	if a.opt.Level != nil {
		a.opt.Level.Set(parseLevel(level))
	}
	a.mu.Lock()
	if !a.st.Armed {
		a.st.AlarmOn = false // disarming clears the alarm
	}
	a.mu.Unlock()
	a.applyOutputs()
	if a.dr != nil {
		a.mu.Lock()
		iv := time.Duration(a.st.DefenderIntervalS) * time.Second
		a.mu.Unlock()
		a.dr.SetInterval(iv)
	}
	signal(a.tick)
}

func (a *Agent) applyOutputs() {
	a.mu.Lock()
	want := make(map[string]bool, len(a.st.Outputs))
	for k, v := range a.st.Outputs {
		want[k] = v
	}
	a.mu.Unlock()
	for name, on := range want {
		o := a.hw.Outputs[name]
		if o == nil || o.On() == on {
			continue
		}
		if err := o.Set(on); err != nil {
			a.mu.Lock()
			a.st.LastError = fmt.Sprintf("set output %s: %v", name, err)
			a.mu.Unlock()
			a.log.Warn("set output failed", "output", name, "err", err)
		}
	}
}

// reported is the reported section: the same shape as the desired keys,
// so that a setting the device has applied leaves no delta.
func (a *Agent) reported() map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := &a.st
	outs := map[string]any{}
	for name := range st.Outputs {
		on := st.Outputs[name]
		if o := a.hw.Outputs[name]; o != nil {
			on = o.On()
		}
		outs[name] = on
	}
	sens := a.partsReport(false, time.Time{})
	alarm := map[string]any{"armed": st.Armed, "state": onOff(st.AlarmOn)}
	if st.LastAlarm != 0 {
		alarm["last_alarm"] = st.LastAlarm
		alarm["last_sensor"] = st.LastSensor
	}
	lastErr := st.LastError
	if errs := append(append([]string(nil), st.desiredErrs...), st.limitErrs...); len(errs) > 0 {
		lastErr = joinProblems(errs)
	}
	identity := map[string]any{"certificate_id": certificateID(a.leaf)}
	if st.OldCertificateID != "" {
		identity["rotated_from"] = st.OldCertificateID
	}
	return map[string]any{
		"agent":      a.reportedAgentLocked(),
		"outbox":     a.reportedOutbox(),
		"alarm":      alarm,
		"telemetry":  map[string]any{"interval_s": st.IntervalS},
		"log":        map[string]any{"level": st.LogLevel},
		"defender":   map[string]any{"enabled": a.dr != nil, "interval_s": st.DefenderIntervalS},
		"identity":   identity,
		"outputs":    outs,
		"sensors":    sens,
		"last_error": lastErr,
		"recovered":  a.reportedRecovered(),
	}
}

func joinProblems(ps []string) string {
	s := ps[0]
	for _, p := range ps[1:] {
		s += "; " + p
	}
	if r := []rune(s); len(r) > 512 {
		s = string(r[:509]) + "..."
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

func parseLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}
