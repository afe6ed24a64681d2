package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/agent/shadow"
	"github.com/iotagent/iotagent/internal/logring"
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
		StartedAt: a.api.started, LogConfig: a.st.LogLevel}
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
	if a.hw.Motion != nil {
		out.Inputs = append(out.Inputs, localapi.InputState{Name: a.hw.Motion.Name(), Active: st.Motion})
	}
	if a.hw.Contact != nil {
		out.Inputs = append(out.Inputs, localapi.InputState{Name: a.hw.Contact.Name(), Active: st.LidOpen})
	}
	if a.hw.Env != nil && st.Env != nil {
		out.Env = &localapi.EnvReading{Sensor: a.hw.Env.Name(), Time: st.Env.Time, TemperatureC: round2(st.Env.TemperatureC),
			HumidityPct: round2(st.Env.HumidityPct), PressureKPa: round2(st.Env.PressureKPa), MaxC: st.MaxC, High: st.TempHigh}
	}
	for name, on := range st.Outputs {
		if o := a.hw.Outputs[name]; o != nil {
			on = o.On()
		}
		out.Outputs[name] = on
	}
	return out
}

// readSensorsNow samples every sensor now, leaving the agent's own state
// (what it reports) alone.
func (a *Agent) readSensorsNow(ctx context.Context) localapi.Sensors {
	out := a.sensorsSection()
	out.Source = "live"
	out.Inputs = nil
	if a.hw == nil {
		return out
	}
	if a.hw.Motion != nil {
		out.Inputs = append(out.Inputs, inputNow(a.hw.Motion.Name(), a.hw.Motion.Active))
	}
	if a.hw.Contact != nil {
		out.Inputs = append(out.Inputs, inputNow(a.hw.Contact.Name(), a.hw.Contact.Active))
	}
	if a.hw.Env != nil {
		e := &localapi.EnvReading{Sensor: a.hw.Env.Name()}
		a.mu.Lock()
		e.MaxC = a.st.MaxC
		a.mu.Unlock()
		r, err := a.hw.Env.Read(ctx)
		if err != nil {
			e.Error = err.Error()
		} else {
			e.Time, e.TemperatureC, e.HumidityPct, e.PressureKPa = r.Time, round2(r.TemperatureC), round2(r.HumidityPct), round2(r.PressureKPa)
			e.High = r.TemperatureC > e.MaxC
		}
		out.Env = e
	}
	return out
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
	st := ob.Stats()
	out.Depth, out.Bytes, out.Dropped = st.Len, st.Bytes, st.Dropped
	out.DroppedTelemetry, out.DroppedAlarm, out.Corrupt = st.DroppedTelemetry, st.DroppedAlarm, st.Corrupt
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

// logLevelName is the name the config uses for l.
func logLevelName(l slog.Level) string { return strings.ToLower(l.String()) }

// apiState is what the local API keeps in the Agent; guarded by Agent.mu.
type apiState struct {
	logs    *logring.Ring
	started time.Time
	connAt  time.Time // when connection number connN came up
	connN   uint64
}
