package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/agent/shadow"
	"github.com/iotagent/iotagent/internal/logring"
	"github.com/iotagent/iotagent/ota"
	"github.com/iotagent/iotagent/sensors"
)

// SetLogRing gives the agent the ring its logger writes to, so that the
// local API can serve the newest log lines. Call it before Run.
func (a *Agent) SetLogRing(r *logring.Ring) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.api.logs = r
}

// serveLocalAPI runs the local API until ctx ends. A socket that cannot be
// created is logged and the agent goes on without it: the cloud side of
// the device matters more than the technician's view of it.
func (a *Agent) serveLocalAPI(ctx context.Context) {
	s := localapi.NewServer(localapi.Options{Socket: a.cfg.LocalAPI.Socket, Group: a.cfg.LocalAPI.Group})
	a.registerAPI(s)
	done := make(chan struct{})
	go func() { defer close(done); a.trackConnection(ctx) }()
	defer func() { <-done }()
	if err := s.Run(ctx); err != nil {
		a.log.Warn("local API not available; iotagent status and logs will not reach this agent", "err", err)
		<-ctx.Done()
		return
	}
}

// trackConnection records when the current MQTT connection came up, for
// "connected since". The transport has no event for a lost connection,
// so while connected it looks every second whether the connection is
// still the same one.
func (a *Agent) trackConnection(ctx context.Context) {
	tr := a.transport()
	if tr == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if tr.WaitConnected(ctx) != nil {
			return
		}
		n := tr.Stats().Connects
		a.mu.Lock()
		a.api.connAt, a.api.connN = a.now(), n
		a.mu.Unlock()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if st := tr.Stats(); !st.Connected || st.Connects != n {
				break
			}
		}
	}
}

// registerAPI registers the sections and actions this agent can fill.
func (a *Agent) registerAPI(s *localapi.Server) {
	a.mu.Lock()
	a.api.started = a.now()
	a.mu.Unlock()
	get := func(f func(context.Context) any) localapi.Provider {
		return func(ctx context.Context) (any, error) { return f(ctx), nil }
	}
	s.Register(localapi.SectionAgent, get(func(context.Context) any { return a.agentSection() }))
	s.Register(localapi.SectionIdentity, get(func(context.Context) any { return a.identitySection() }))
	s.Register(localapi.SectionConnection, get(func(context.Context) any { return a.connectionSection() }))
	s.Register(localapi.SectionShadow, get(a.shadowSection))
	s.Register(localapi.SectionSensors, get(func(context.Context) any { return a.sensorsSection() }))
	s.Register(localapi.SectionOutbox, get(func(context.Context) any { return a.outboxSection() }))
	s.Register(localapi.SectionLogs, get(func(context.Context) any { return a.logsSection() }))
	s.Register(localapi.SectionDefender, get(func(context.Context) any { return a.defenderSection() }))
	s.Register(localapi.SectionJobs, get(func(context.Context) any { return a.jobsSection() }))
	s.Register(localapi.SectionOTA, get(func(context.Context) any { return a.otaSection() }))
	a.registerOutboxAPI(s)
	s.Register(localapi.SectionState, get(func(context.Context) any { return a.stateSection() }))
	if a.dr != nil {
		s.RegisterAction(localapi.ActionDefenderReport, func(ctx context.Context, _ []byte) (any, error) {
			if err := a.dr.Report(ctx); err != nil {
				return nil, fmt.Errorf("defender report: %w", err)
			}
			return localapi.Done{OK: true, Message: "Device Defender report sent; the answer shows in iotagent status"}, nil
		})
	}
	s.RegisterAction(localapi.ActionRotateCert, func(ctx context.Context, _ []byte) (any, error) {
		res, err := a.Rotate(ctx)
		if err != nil {
			return nil, fmt.Errorf("certificate rotation: %w", err)
		}
		return localapi.Rotated{NewCertificateID: res.NewCertificateID, NewCertificate: res.NewCertFile, OldCertificateID: res.OldCertificateID}, nil
	})
	s.RegisterAction(localapi.ActionReadSensors, func(ctx context.Context, _ []byte) (any, error) {
		return a.readSensorsNow(ctx), nil
	})
	s.RegisterAction(localapi.ActionResyncShadow, func(context.Context, []byte) (any, error) {
		signal(a.connected)
		return localapi.Done{OK: true, Message: "shadow resync requested: the agent gets the shadow, applies desired and reports"}, nil
	})
	if a.jobs.updater != nil {
		s.RegisterAction(localapi.ActionOTACommit, func(context.Context, []byte) (any, error) { return a.otaCommit() })
		s.RegisterAction(localapi.ActionOTARollback, func(_ context.Context, body []byte) (any, error) {
			var req localapi.OTARollback
			if len(body) > 0 {
				if err := json.Unmarshal(body, &req); err != nil {
					return nil, localapi.BadRequest("want {\"reason\": text}")
				}
			}
			return a.otaRollback(req.Reason)
		})
	}
	s.RegisterAction(localapi.ActionPartsPush, func(_ context.Context, body []byte) (any, error) {
		return a.push(body)
	})
	s.RegisterAction(localapi.ActionLogLevel, func(_ context.Context, body []byte) (any, error) {
		var req localapi.LogLevel
		if err := json.Unmarshal(body, &req); err != nil || !slices.Contains(logLevels, req.Level) {
			return nil, localapi.BadRequest("want {\"level\": one of %s}", strings.Join(logLevels, ", "))
		}
		if a.opt.Level == nil {
			return nil, localapi.BadRequest("this agent was started without a settable log level")
		}
		a.opt.Level.Set(parseLevel(req.Level))
		a.log.Info("log level set through the local API until restart", "level", req.Level)
		return localapi.LogLevel{Level: req.Level}, nil
	})
}

func (a *Agent) agentSection() localapi.Agent {
	a.mu.Lock()
	out := localapi.Agent{Version: a.opt.Version, Thing: a.cfg.ThingName, PID: os.Getpid(),
		StartedAt: a.api.started, LogConfig: a.st.LogLevel, Goroutines: runtime.NumGoroutine()}
	a.mu.Unlock()
	out.LogLevel = out.LogConfig
	if a.opt.Level != nil {
		out.LogLevel = logLevelName(a.opt.Level.Level())
	}
	if err := a.Healthy(); err != nil {
		out.Unhealthy = err.Error()
	} else {
		out.Healthy = true
	}
	out.Degraded = a.Degraded()
	return out
}

func (a *Agent) identitySection() localapi.Identity {
	id := localapi.Identity{Thing: a.cfg.ThingName, Cert: a.cfg.Identity.Cert, KeyStore: a.cfg.Identity.KeyStore, Key: a.cfg.Identity.Key}
	if id.KeyStore == "tpm" {
		id.Key = fmt.Sprintf("%s handle %v", a.cfg.Identity.TPM.Device, a.cfg.Identity.TPM.Handle)
	}
	data, err := os.ReadFile(a.cfg.Identity.Cert)
	if err != nil {
		id.Error = err.Error()
		return id
	}
	der, _ := nextCertificate(data)
	if der == nil {
		id.Error = "no PEM certificate in " + a.cfg.Identity.Cert
		return id
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		id.Error = err.Error()
		return id
	}
	id.Subject, id.Issuer = leaf.Subject.String(), leaf.Issuer.String()
	id.NotBefore, id.NotAfter = leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	id.DaysLeft = DaysLeft(a.now(), leaf.NotAfter)
	return id
}

// DaysLeft is the whole days from now until notAfter; once expired it is
// minus the whole days since (at least 1).
func DaysLeft(now, notAfter time.Time) int {
	d := notAfter.Sub(now)
	if d < 0 {
		return -max(1, int((-d).Hours()/24))
	}
	return int(d.Hours() / 24)
}

func (a *Agent) connectionSection() localapi.Connection {
	c := localapi.Connection{
		Endpoint:   net.JoinHostPort(a.cfg.MQTT.Endpoint, strconv.Itoa(a.cfg.MQTT.Port)),
		ServerName: a.cfg.MQTT.TLSServerName(), ALPN: a.cfg.MQTT.ALPN, ClientID: a.cfg.ThingName,
	}
	tr := a.transport()
	if tr == nil {
		return c
	}
	st := tr.Stats()
	c.Connected, c.Connects, c.ConnectFailures, c.Disconnects = st.Connected, st.Connects, st.ConnectFailures, st.Disconnects
	c.LastAttempt, c.LastError = st.LastAttempt, st.LastError
	c.Subscriptions, c.Subscribed, c.Published, c.Delivered = st.Subscriptions, st.Subscribed, st.Published, st.Delivered
	c.PublishFailures, c.LastPublishAck, c.NextAttempt = st.PublishFailures, st.LastPublishAck, st.NextAttempt
	if d := st.Diagnosis; d != nil {
		c.Diagnosis = &localapi.ConnDiagnosis{Text: d.Text, Kind: d.Kind, Topic: d.Topic, OutboxID: d.OutboxID, InARow: d.InARow, At: d.At}
	}
	a.mu.Lock()
	if st.Connected && a.api.connN == st.Connects {
		c.ConnectedSince = a.api.connAt
	}
	a.mu.Unlock()
	return c
}

// shadowLiveTimeout bounds the shadow get that the shadow section makes.
const shadowLiveTimeout = 3 * time.Second

// shadowSection reports the local view and, when connected, the cloud's
// document from a live get, so that a pending delta shows.
func (a *Agent) shadowSection(ctx context.Context) any {
	out := localapi.Shadow{Reported: a.reported()}
	select {
	case <-a.synced:
		out.Synced = true
	default:
	}
	a.mu.Lock()
	out.Problems = slices.Clone(a.st.desiredErrs)
	out.LastError = a.st.LastError
	a.mu.Unlock()
	if a.sh == nil {
		out.CloudError = "not started"
		return out
	}
	if tr := a.transport(); tr == nil || !tr.Connected() {
		out.CloudError = "offline: not connected to " + a.cfg.MQTT.Endpoint
	} else {
		gctx, cancel := context.WithTimeout(ctx, shadowLiveTimeout)
		doc, err := a.sh.Get(gctx)
		cancel()
		switch {
		case errors.Is(err, shadow.ErrNotFound):
			out.CloudError = "the cloud has no shadow for this thing yet"
		case err != nil:
			out.CloudError = err.Error()
		default:
			out.FetchedLive = true
			out.Desired, out.Delta = doc.State.Desired, doc.State.Delta
			out.Pending = flatKeys("", doc.State.Delta)
		}
	}
	out.Version = a.sh.Version()
	out.InSync = out.Synced && out.FetchedLive && len(out.Pending) == 0 && len(out.Problems) == 0
	return out
}

// flatKeys lists the leaf paths of a JSON object ("alarm.armed"), sorted.
func flatKeys(prefix string, m map[string]any) []string {
	var out []string
	for k, v := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			out = append(out, flatKeys(p, sub)...)
		} else {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func (a *Agent) sensorsSection() localapi.Sensors {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := &a.st
	out := localapi.Sensors{Source: "agent", ReadErrors: st.ReadErrors, LastError: st.LastError,
		Outputs: map[string]bool{},
		Alarm:   localapi.AlarmState{Armed: st.Armed, On: st.AlarmOn, LastAlarm: st.LastAlarm, LastSensor: st.LastSensor, Events: st.Events}}
	if a.hw == nil {
		return out
	}
	for _, p := range a.parts {
		ps := st.Parts[p.Name]
		if p.in != nil {
			out.Inputs = append(out.Inputs, localapi.InputState{Name: p.Name, Active: ps.Active})
		}
		if a.isEnv(p) && ps.Values != nil && out.Env == nil {
			out.Env = a.envReading(p.Name, ps.Values)
		}
	}
	out.Parts = map[string]map[string]any{}
	for name, v := range a.partsReport(false, time.Time{}) {
		out.Parts[name] = v.(map[string]any)
	}
	for name, on := range st.Outputs {
		if o := a.hw.Outputs[name]; o != nil {
			on = o.On()
		}
		out.Outputs[name] = on
	}
	return out
}

// readSensorsNow reads every input and sampled part now (the parts in
// parallel, each after any scheduled read of it under way and bounded as
// those are), leaving the agent's own state (what it reports) alone. A
// part whose read fails shows its error; the others their new readings.
func (a *Agent) readSensorsNow(ctx context.Context) localapi.Sensors {
	out := a.sensorsSection()
	out.Source = "live"
	out.Inputs, out.Env = nil, nil
	if a.hw == nil {
		return out
	}
	// Answer before the local API's own deadline, with the parts that did
	// not read in time saying so.
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-liveReadMargin))
		defer cancel()
	}
	type result struct {
		v   sensors.Values
		err error
	}
	res := make([]result, len(a.parts))
	var wg sync.WaitGroup
	for i, p := range a.parts {
		if p.smp == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := p.read(ctx, nil)
			if err == nil {
				err = checkValues(v)
			}
			res[i] = result{v, err}
		}()
	}
	for _, p := range a.parts {
		if p.in != nil {
			out.Inputs = append(out.Inputs, inputNow(p.Name, p.in.Active))
		}
	}
	wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, p := range a.parts {
		if p.smp == nil {
			continue
		}
		r := res[i]
		m := out.Parts[p.Name]
		for k := range a.st.Parts[p.Name].Values { // the last values go
			delete(m, k)
		}
		delete(m, "error")
		if r.err != nil {
			m["error"] = partError(p.NamedPart, r.err)
		}
		for k, v := range r.v {
			if r.err == nil {
				m[k] = round2(v)
			}
		}
		if a.isEnv(p) && out.Env == nil {
			e := a.envReading(p.Name, r.v)
			if r.err != nil {
				e.Error = r.err.Error()
			}
			out.Env = e
		}
	}
	return out
}

// liveReadMargin is the time readSensorsNow keeps to answer within the
// local API's deadline.
const liveReadMargin = 250 * time.Millisecond

// isEnv reports whether p is the chocolate box's environment sensor, a
// BME280, which the sensors section shows on its own line.
func (a *Agent) isEnv(p *runPart) bool {
	return p.smp != nil && (p.Type == "bme280" || (a.hw.Env != nil && p.Name == a.hw.Env.Name()))
}

// envReading is the chocolate box's environment reading of part name;
// called with a.mu held.
func (a *Agent) envReading(name string, v map[string]float64) *localapi.EnvReading {
	e := &localapi.EnvReading{Sensor: name, TemperatureC: round2(v["temperature_c"]), HumidityPct: round2(v["humidity_pct"]),
		PressureKPa: round2(v["pressure_kpa"])}
	if l, ok := a.st.Sensors[name].Limits["temperature_c"]; ok && l.High != nil {
		e.MaxC = *l.High
		e.High = v != nil && v["temperature_c"] > e.MaxC
	}
	return e
}

func inputNow(name string, active func() (bool, error)) localapi.InputState {
	on, err := active()
	s := localapi.InputState{Name: name, Active: on}
	if err != nil {
		s.Error = err.Error()
	}
	return s
}

func (a *Agent) defenderSection() localapi.Defender {
	out := localapi.Defender{Format: a.cfg.Defender.Format}
	if a.dr == nil {
		return out
	}
	st := a.dr.Stats()
	out.Enabled, out.IntervalS = true, int(a.dr.Interval()/time.Second)
	out.Sent, out.Accepted, out.Rejected, out.PublishFailures = st.Sent, st.Accepted, st.Rejected, st.PublishFailures
	out.LastReportID, out.LastError = st.LastReportID, st.LastError
	return out
}

func (a *Agent) outboxSection() localapi.Outbox {
	out := localapi.Outbox{MaxMessages: a.cfg.Outbox.MaxMessages, MaxBytes: a.cfg.Outbox.MaxBytes}
	ob := a.box()
	if ob == nil {
		return out
	}
	OutboxStats(ob, &out)
	return out
}

func (a *Agent) logsSection() localapi.Logs {
	a.mu.Lock()
	r := a.api.logs
	a.mu.Unlock()
	if r == nil {
		return localapi.Logs{Lines: []string{}}
	}
	lines, total := r.Lines(0)
	return localapi.Logs{Lines: lines, Total: total, Kept: r.Size()}
}

// otaConflict is the answer when the updater's state does not allow a
// commit or rollback: the technician's command fails with err's text.
func otaConflict(err error) error {
	msg := err.Error()
	if errors.Is(err, ota.ErrNotInitialized) {
		msg = "OTA is not initialised (no STATE/ota/state.json): the agent does not run from an OTA slot; the systemd unit runs iotagent ota init before it starts"
	}
	return &localapi.Error{Status: http.StatusConflict, Code: "conflict", Message: msg}
}

// otaCommit is the ota.commit action: the version on trial (this
// process) becomes the committed one now, without waiting for the
// automatic commit after the first shadow sync.
func (a *Agent) otaCommit() (any, error) {
	a.api.otaMu.Lock()
	defer a.api.otaMu.Unlock()
	u := a.jobs.updater
	st, err := u.Status()
	if err != nil {
		return nil, otaConflict(err)
	}
	if st.State != ota.Confirm && st.ActiveVersion == a.opt.Version {
		return localapi.OTAChange{Active: st.Active, ActiveVersion: st.ActiveVersion,
			Message: fmt.Sprintf("nothing on trial: version %s in slot %s is committed already", st.ActiveVersion, st.Active)}, nil
	}
	if err := u.Commit(); err != nil {
		return nil, otaConflict(err)
	}
	if st, err = u.Status(); err != nil {
		return nil, err
	}
	a.log.Info("OTA version committed through the local API", "version", st.ActiveVersion, "slot", st.Active)
	return localapi.OTAChange{Changed: true, Active: st.Active, ActiveVersion: st.ActiveVersion,
		Message: fmt.Sprintf("committed version %s in slot %s: the agent starts it from now on; slot %s (version %s) stays as the fallback for iotagent ota rollback",
			st.ActiveVersion, st.Active, otherSlot(st.Active), orUnknown(st.FromVersion))}, nil
}

// otaRollback is the ota.rollback action: abandon the trial, or go back
// to the previous slot after a commit; then the agent restarts (as for a
// restart-agent job) so that the supervisor starts the committed slot.
func (a *Agent) otaRollback(reason string) (any, error) {
	a.api.otaMu.Lock()
	defer a.api.otaMu.Unlock()
	if reason == "" {
		reason = "rolled back by iotagent ota rollback"
	}
	u := a.jobs.updater
	before, err := u.Status()
	if err != nil {
		return nil, otaConflict(err)
	}
	if err := u.Rollback(reason); err != nil {
		return nil, otaConflict(err)
	}
	st, err := u.Status()
	if err != nil {
		return nil, err
	}
	left := before.Release.Version
	if before.State == ota.Committed {
		left = before.ActiveVersion
	}
	a.log.Warn("OTA rolled back through the local API", "from_version", left, "to_version", st.ActiveVersion, "slot", st.Active, "reason", reason)
	out := localapi.OTAChange{Changed: true, Active: st.Active, ActiveVersion: st.ActiveVersion,
		Message: fmt.Sprintf("rolled back: slot %s (version %s) is committed; version %s is not installed again automatically",
			st.Active, orUnknown(st.ActiveVersion), orUnknown(left))}
	synced := false
	select {
	case <-a.synced:
		synced = true
	default:
	}
	switch {
	case synced || a.jobs.runner == nil:
		out.Restarting = true
		out.Message += "; the agent restarts into it now"
		signal(a.jobs.restart)
	default:
		out.Restarting = true
		out.Message += "; the agent restarts into it once it has connected (systemctl restart iotagent does it now)"
		signal(a.jobs.restart)
	}
	return out, nil
}

func otherSlot(s string) string {
	if s == "a" {
		return "b"
	}
	return "a"
}

func orUnknown(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

// reportedAgentLocked is the reported "agent" object: the version and,
// with OTA initialised, the slot this process runs from (the committed
// one, or the one on trial). The slot does not change while the process
// runs (a commit makes the trial slot the committed one; a rollback
// restarts), so it is read once. a.mu must be held.
func (a *Agent) reportedAgentLocked() map[string]any {
	m := map[string]any{"version": a.opt.Version}
	if u := a.jobs.updater; u != nil && !a.api.slotRead {
		a.api.slotRead = true
		if st, err := u.Status(); err == nil {
			a.api.slot = st.Active
			if u.InTrial() {
				a.api.slot = st.Slot
			}
		}
	}
	if a.api.slot != "" {
		m["slot"] = a.api.slot
	}
	return m
}

// logLevelName is the name the config uses for l.
func logLevelName(l slog.Level) string { return strings.ToLower(l.String()) }

// apiState is what the local API keeps in the Agent; guarded by Agent.mu.
type apiState struct {
	logs    *logring.Ring
	started time.Time
	connAt  time.Time // when connection number connN came up
	connN   uint64
	// slot is the OTA slot this process runs from ("" without OTA), read
	// once (slotRead) for the reported state.
	slot     string
	slotRead bool
	// otaMu serialises the ota.commit and ota.rollback actions (not a.mu:
	// they read and write files).
	otaMu sync.Mutex
}
