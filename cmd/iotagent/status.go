package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
)

const statusText = `One screen about the running agent: identity and certificate expiry, key
store, endpoint and connection, last error, shadow sync, sensors, alarm,
jobs, OTA, Device Defender and the outbox. When the agent is not running
it says so and shows what the state dir says (identity, the last and the
in-flight job, OTA, a first-boot error), and exits 3.`

func status(x *inv) error {
	c, err := x.client()
	if err != nil {
		return err
	}
	st, err := c.Status(context.Background())
	if err != nil {
		return offline(x, err, renderOffline)
	}
	if x.json {
		return printJSON(x.stdout, st)
	}
	_, err = io.WriteString(x.stdout, renderStatus(st, now()))
	return err
}

// renderStatus is the human-readable status screen.
func renderStatus(st map[string]json.RawMessage, now time.Time) string {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-11s %s\n", label, fmt.Sprintf(format, args...))
	}
	// decode fills v from section name; it reports a section's error, or
	// its absence, on the line instead.
	decode := func(label, name string, v any) bool {
		raw, ok := st[name]
		if !ok {
			line(label, "not provided by this agent (%s)", notProvidedWhy(name))
			return false
		}
		var e localapi.Error
		if json.Unmarshal(raw, &e) == nil && e.Code != "" && e.Message != "" {
			line(label, "error: %s", e.Message)
			return false
		}
		if err := json.Unmarshal(raw, v); err != nil {
			line(label, "unreadable: %v", err)
			return false
		}
		return true
	}

	var ag localapi.Agent
	if decode("Agent", localapi.SectionAgent, &ag) {
		health := "healthy"
		switch {
		case !ag.Healthy:
			health = "UNHEALTHY: " + ag.Unhealthy
		case len(ag.Degraded) > 0:
			health = "DEGRADED: " + strings.Join(ag.Degraded, "; ")
		}
		level := ag.LogLevel
		if ag.LogConfig != "" && ag.LogConfig != ag.LogLevel {
			level += " (configured " + ag.LogConfig + ", until restart)"
		}
		line("Agent", "iotagent %s, pid %d (%d goroutines), up %s, %s; log level %s", ag.Version, ag.PID, ag.Goroutines, ago(now, ag.StartedAt), health, level)
	}
	var id localapi.Identity
	if decode("Identity", localapi.SectionIdentity, &id) {
		renderIdentity(id, line)
	}
	var conn localapi.Connection
	if decode("Endpoint", localapi.SectionConnection, &conn) {
		ep := conn.Endpoint
		if conn.ServerName != "" && !strings.HasPrefix(conn.Endpoint, conn.ServerName+":") {
			ep += " (TLS name " + conn.ServerName + ")"
		}
		if conn.ALPN {
			ep += ", ALPN x-amzn-mqtt-ca"
		}
		line("Endpoint", "%s as client ID %s", ep, conn.ClientID)
		counts := fmt.Sprintf("%d connects, %d failed attempts, %d disconnects", conn.Connects, conn.ConnectFailures, conn.Disconnects)
		switch {
		case conn.Connected && !conn.ConnectedSince.IsZero():
			line("Connected", "since %s (%s); %s", stamp(conn.ConnectedSince), ago(now, conn.ConnectedSince), counts)
		case conn.Connected:
			line("Connected", "yes; %s", counts)
		case conn.LastAttempt.IsZero():
			line("Connected", "NO, no attempt yet")
		default:
			line("Connected", "NO, last attempt %s ago; %s", ago(now, conn.LastAttempt), counts)
		}
		if conn.Connected && conn.Subscribed < conn.Subscriptions {
			line("", "only %d of %d subscriptions acknowledged", conn.Subscribed, conn.Subscriptions)
		}
		lastErr := conn.LastError
		switch {
		case lastErr == "":
			lastErr = "none"
		case conn.Connected:
			lastErr = "none since connecting; before: " + lastErr
		}
		if dg := conn.Diagnosis; dg != nil {
			line("Policy?", "%s (%d in a row, the last %s ago)", dg.Text, dg.InARow, ago(now, dg.At))
		}
		if !conn.Connected && !conn.NextAttempt.IsZero() {
			line("", "next attempt at %s (backing off)", stamp(conn.NextAttempt))
		}
		line("Last error", "%s", lastErr)
	}
	var sh localapi.Shadow
	if decode("Shadow", localapi.SectionShadow, &sh) {
		switch {
		case sh.InSync:
			line("Shadow", "in sync (version %d)", sh.Version)
		case len(sh.Pending) > 0:
			line("Shadow", "PENDING DELTA (version %d): %s", sh.Version, strings.Join(sh.Pending, ", "))
		case !sh.Synced:
			line("Shadow", "not synced yet since start")
		case !sh.FetchedLive:
			line("Shadow", "synced earlier (version %d); now unknown: %s", sh.Version, sh.CloudError)
		default:
			line("Shadow", "not in sync (version %d)", sh.Version)
		}
		for _, p := range sh.Problems {
			line("", "not applied: %s", p)
		}
		if sh.LastError != "" { // the agent's own: first boot, provisioning, sensors, outputs
			line("Problem", "%s", sh.LastError)
		}
	}
	var se localapi.Sensors
	if decode("Sensors", localapi.SectionSensors, &se) {
		renderSensors(&b, se, line)
	}
	renderOptional(st, line)
	var ob localapi.Outbox
	if decode("Outbox", localapi.SectionOutbox, &ob) {
		line("Outbox", "%d queued (%s) of %d; %d dropped (%d telemetry, %d warnings, %d alarms)", ob.Depth, bytesText(ob.Bytes), ob.MaxMessages,
			ob.Dropped, ob.DroppedTelemetry, ob.DroppedWarning, ob.DroppedAlarm)
		if ob.Degraded != "" {
			line("", "DEGRADED: %s; %d in memory now", ob.Degraded, ob.Memory)
		}
		if ob.Quarantined > 0 {
			line("", "%d QUARANTINED (the broker refused them): iotagent outbox list --quarantine", ob.Quarantined)
		}
	}
	return b.String()
}

// renderIdentity writes the identity's and the key store's lines.
func renderIdentity(id localapi.Identity, line func(label, format string, args ...any)) {
	if id.Thing == "" {
		id.Thing = "no thing name yet"
	}
	switch {
	case id.Error != "":
		line("Identity", "%s; certificate %s: %s", id.Thing, id.Cert, id.Error)
	default:
		line("Identity", "%s; certificate %s", id.Thing, id.Subject)
		line("", "issued by %s", id.Issuer)
		line("", "%s", expiry(id.NotAfter, id.DaysLeft))
	}
	line("Key store", "%s %s", id.KeyStore, id.Key)
}

// renderSensors writes the sensors' and the alarm's lines.
func renderSensors(b *strings.Builder, se localapi.Sensors, line func(label, format string, args ...any)) {
	var parts []string
	if e := se.Env; e != nil {
		if e.Error != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", e.Sensor, e.Error))
		} else {
			hot := ""
			if e.High {
				hot = " HIGH"
			}
			parts = append(parts, fmt.Sprintf("%s %.2f °C%s (max %g), %.2f %%RH, %.2f kPa", e.Sensor, e.TemperatureC, hot, e.MaxC, e.HumidityPct, e.PressureKPa))
		}
	}
	for _, in := range se.Inputs {
		parts = append(parts, inputText(in))
	}
	parts = append(parts, partTexts(se)...)
	if len(parts) == 0 {
		parts = append(parts, "no values yet")
	}
	line("Sensors", "%s", parts[0])
	for _, p := range parts[1:] {
		line("", "%s", p)
	}
	if se.ReadErrors > 0 {
		line("", "%d read errors; last: %s", se.ReadErrors, se.LastError)
	}
	if len(se.Outputs) > 0 {
		names := make([]string, 0, len(se.Outputs))
		for n := range se.Outputs {
			names = append(names, n)
		}
		sort.Strings(names)
		var outs []string
		for _, n := range names {
			outs = append(outs, n+" "+onOff(se.Outputs[n]))
		}
		line("Outputs", "%s", strings.Join(outs, ", "))
	}
	al := se.Alarm
	armed := "disarmed"
	if al.Armed {
		armed = "armed"
	}
	state := "off"
	if al.On {
		state = "ON"
	}
	last := ""
	if al.LastAlarm != 0 {
		last = fmt.Sprintf("; last alarm %s by %s", stamp(time.Unix(al.LastAlarm, 0)), al.LastSensor)
	}
	line("Alarm", "%s, %s%s", armed, state, last)
}

// partTexts are the lines of every part but those with a line of their
// own (the GPIO inputs and the chocolate box's environment sensor): a
// part's readings, and whether it is active for a push part with a role.
func partTexts(se localapi.Sensors) []string {
	own := map[string]bool{}
	for _, in := range se.Inputs {
		own[in.Name] = true
	}
	if se.Env != nil {
		own[se.Env.Sensor] = true
	}
	names := make([]string, 0, len(se.Parts))
	for n := range se.Parts {
		if !own[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		p := se.Parts[n]
		var vals []string
		for k, v := range p {
			if f, ok := v.(float64); ok {
				vals = append(vals, fmt.Sprintf("%s %g", k, f))
			}
		}
		sort.Strings(vals)
		if on, ok := p["active"].(bool); ok {
			vals = append([]string{map[bool]string{true: "active", false: "inactive"}[on]}, vals...)
		}
		if armed, ok := p["armed"].(bool); ok && !armed {
			vals = append(vals, "disarmed")
		}
		e, _ := p["error"].(string)
		text := n + ": " + strings.Join(vals, ", ")
		switch {
		case len(vals) == 0 && e != "":
			text, e = n+": READ FAILED: "+e, ""
		case len(vals) == 0:
			text = n + ": no values yet"
		}
		if w, ok := p["warning"].(map[string]any); ok && len(w) > 0 {
			var ws []string
			for k, v := range w {
				ws = append(ws, fmt.Sprintf("%s %v", k, v))
			}
			sort.Strings(ws)
			text += " (WARNING: " + strings.Join(ws, ", ") + ")"
		}
		if e != "" {
			text += "; error: " + e
		}
		out = append(out, text)
	}
	return out
}

func inputText(in localapi.InputState) string {
	if in.Error != "" {
		return in.Name + ": " + in.Error
	}
	switch in.Name {
	case "motion":
		if in.Active {
			return "motion: MOTION"
		}
		return "motion: still"
	case "contact":
		if in.Active {
			return "contact: OPEN (lid)"
		}
		return "contact: closed (lid)"
	}
	return fmt.Sprintf("%s: %s", in.Name, map[bool]string{true: "active", false: "inactive"}[in.Active])
}

// renderOptional writes jobs, OTA and Defender, which only some agents
// provide.
func renderOptional(st map[string]json.RawMessage, line func(label, format string, args ...any)) {
	renderSection(st, localapi.SectionJobs, "Jobs", line, renderJobs)
	renderSection(st, localapi.SectionOTA, "OTA", line, renderOTA)
	renderSection(st, localapi.SectionDefender, "Defender", line, renderDefender)
	if _, ok := st[localapi.SectionState]; ok {
		renderSection(st, localapi.SectionState, "State", line, renderState)
	}
}

// renderState lists the state files the agent recovered whose moved-aside
// copy is still there (see docs/state-files.md).
func renderState(s localapi.State, line func(label, format string, args ...any)) {
	var open []localapi.Recovery
	for _, r := range s.Recovered {
		if r.MovedCopyPresent {
			open = append(open, r)
		}
	}
	switch {
	case s.Error != "":
		line("State", "journal unreadable: %s", s.Error)
	case len(open) == 0:
		line("State", "%s: no state file needs attention (%d recoveries in %s)", s.Dir, len(s.Recovered), s.Journal)
		return
	default:
		line("State", "RECOVERED %d state files; each damaged copy was kept:", len(open))
	}
	for _, r := range open[max(0, len(open)-5):] {
		text := fmt.Sprintf("%s at %s: %s; moved to %s", r.File, stamp(r.At), r.Reason, r.MovedTo)
		if r.Action != "" {
			text += "; " + r.Action
		}
		switch {
		case r.LostUnknown && r.Lost == 0:
			text += fmt.Sprintf("; %d messages salvaged, an unknown number lost", r.Salvaged)
		case r.LostUnknown:
			text += fmt.Sprintf("; %d messages salvaged, at least %d lost", r.Salvaged, r.Lost)
		case r.Salvaged > 0 || r.Lost > 0:
			text += fmt.Sprintf("; %d messages salvaged, %d lost", r.Salvaged, r.Lost)
		}
		line("", "%s", text)
	}
}

func renderDefender(d localapi.Defender, line func(label, format string, args ...any)) {
	if !d.Enabled {
		line("Defender", "off (defender.enabled is false)")
		return
	}
	ack := "no answer yet"
	if d.Accepted+d.Rejected > 0 {
		ack = "answered"
	}
	if d.LastAck != "" {
		ack = d.LastAck
		if !d.LastAckAt.IsZero() {
			ack += " at " + stamp(d.LastAckAt)
		}
	}
	line("Defender", "every %ds, %s; last report %d: %s; %d sent, %d accepted, %d rejected", d.IntervalS, d.Format, d.LastReportID, ack, d.Sent, d.Accepted, d.Rejected)
	if d.LastError != "" {
		line("", "last error: %s", d.LastError)
	}
}

// renderSection decodes section name of st and renders it, or says why
// it cannot.
func renderSection[T any](st map[string]json.RawMessage, name, label string, line func(label, format string, args ...any), render func(T, func(label, format string, args ...any))) {
	raw, ok := st[name]
	if !ok {
		line(label, "not provided by this agent (%s)", notProvidedWhy(name))
		return
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		line(label, "unreadable: %v", err)
		return
	}
	render(v, line)
}

func renderJobs(j localapi.Jobs, line func(label, format string, args ...any)) {
	if !j.Enabled {
		line("Jobs", "off (jobs.enabled is false)")
		return
	}
	now := "none running"
	if c := j.Current; c != nil {
		now = fmt.Sprintf("running %s (%s) since %s", c.ID, c.Operation, stamp(c.StartedAt))
	}
	if len(j.Handlers) == 0 {
		line("Jobs", "on; %s", now)
	} else {
		line("Jobs", "on: %s; %s", strings.Join(j.Handlers, ", "), now)
	}
	if l := j.Last; l != nil {
		last := fmt.Sprintf("last %s (%s) %s at %s", l.ID, orNoOperation(l.Operation), l.Outcome, stamp(l.EndedAt))
		if l.Error != "" {
			last += ": " + l.Error
		}
		line("", "%s", last)
	}
	if f := j.InFlight; f != nil && (j.Current == nil || j.Current.ID != f.JobID) {
		line("", "in flight: %s (%s), resumed at the next start", f.JobID, f.Operation)
	}
	if j.Error != "" {
		line("", "error: %s", j.Error)
	}
}

func renderOTA(o localapi.OTA, line func(label, format string, args ...any)) {
	if !o.Enabled {
		line("OTA", "off (ota.enabled is false); running %s", o.Version)
		return
	}
	switch {
	case o.Error != "":
		line("OTA", "running %s; state unreadable: %s", o.Version, o.Error)
	case o.State == "":
		line("OTA", "running %s; no OTA slots yet (iotagent ota init makes them)", o.Version)
	case o.InTrial:
		line("OTA", "running %s ON TRIAL in slot %s (start %d of %d); slot %s (%s) is the fallback",
			o.Version, o.Slot, o.Starts, o.MaxStarts, o.Active, orUnknown(o.ActiveVersion))
	default:
		line("OTA", "running %s; slot %s (%s) committed; last update %s", o.Version, o.Active, orUnknown(o.ActiveVersion), o.State)
	}
	if o.Reason != "" {
		line("", "reason: %s", o.Reason)
	}
	if len(o.Failed) > 0 {
		line("", "never reinstalled automatically: %s", strings.Join(o.Failed, ", "))
	}
}

func orNoOperation(op string) string {
	if op == "" {
		return "no operation"
	}
	return op
}

func orUnknown(v string) string {
	if v == "" {
		return "version unknown"
	}
	return v
}

func notProvidedWhy(name string) string {
	switch name {
	case localapi.SectionJobs:
		return "this build has no jobs service"
	case localapi.SectionOTA:
		return "this build has no OTA updater"
	case localapi.SectionDefender:
		return "this build does not wire Device Defender into the local API"
	}
	return "an older agent"
}

func expiry(notAfter time.Time, days int) string {
	switch {
	case days < 0:
		return fmt.Sprintf("EXPIRED %s (%d days ago): renew it", stamp(notAfter), -days)
	case days < 30:
		return fmt.Sprintf("expires %s: only %d days left, renew soon", stamp(notAfter), days)
	}
	return fmt.Sprintf("expires %s (%d days left)", stamp(notAfter), days)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// ago is a rough duration for people: "3h12m", "45s", "12 days".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
