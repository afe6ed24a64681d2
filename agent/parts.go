package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/agent/outbox"
	"github.com/iotagent/iotagent/sensors"
)

// The device is a set of named parts (config.Part): inputs with a role,
// outputs, sensors sampled on their interval and parts whose readings a
// local program pushes. Each part has one partState; the same code raises
// its alarms and warnings, reports it under reported.sensors.<name> and
// puts it in telemetry, whatever the part is.

// runPart is a part as the agent runs it.
type runPart struct {
	config.NamedPart
	in  sensors.Input   // an input; nil otherwise
	smp sensors.Sampler // a sampled part; nil otherwise
	// reading is held while smp is read, so that the scheduled reads and
	// a live read (sensors read) use it from one goroutine at a time, as
	// the Sampler contract asks.
	reading chan struct{}
}

// partState is what the agent knows of one part; guarded by Agent.mu.
type partState struct {
	Values sensors.Values
	Active bool
	Count  uint64
	Rate   float64 // pulses per minute over the last telemetry interval
	Err    string
	// Warn holds the warnings raised and not cleared: reading -> "high"
	// or "low", and "active" -> "too long" for a state input.
	Warn        map[string]string
	activeTimer *time.Timer
	rateCount   uint64    // Count at the last rate
	rateAt      time.Time // when
	saved       uint64    // Count last persisted
}

// maxReadTime bounds one read of a sampled part.
const maxReadTime = 10 * time.Second

// maxAbsReading is the largest magnitude a reading may have; anything
// larger is nonsense from the part, not a value.
const maxAbsReading = 1e12

// setupParts builds the parts the agent runs from the config and the
// opened hardware: cfg.DeviceParts, plus the chocolate box's parts that
// a caller built by hand (Hardware.Motion, Contact, Env) under their own
// names.
func (a *Agent) setupParts() {
	byName := map[string]*runPart{}
	for _, np := range a.cfg.DeviceParts() {
		if np.Type == config.TypeOutput {
			continue
		}
		byName[np.Name] = &runPart{NamedPart: np}
	}
	legacy := func(name string) *runPart {
		p := byName[name]
		if p == nil {
			p = &runPart{NamedPart: config.NamedPart{Name: name, Part: config.ChocolateBoxPart(name, a.cfg.Temperature.MaxC)}}
			byName[name] = p
		}
		return p
	}
	hw := a.hw
	for _, in := range []sensors.Input{hw.Motion, hw.Contact} {
		if in != nil {
			legacy(in.Name()).in = in
		}
	}
	if hw.Env != nil {
		p := legacy(hw.Env.Name())
		p.smp = envSampler{hw.Env}
		if p.Limits == nil { // a hand-built BME280 under another name
			maxC := a.cfg.Temperature.MaxC
			p.Limits = map[string]config.Limit{"temperature_c": {High: &maxC}}
		}
	}
	for name, in := range hw.Inputs {
		if p := byName[name]; p != nil {
			p.in = in
		}
	}
	for name, s := range hw.Samplers {
		if p := byName[name]; p != nil {
			p.smp = s
		}
	}
	a.parts = make([]*runPart, 0, len(byName))
	for _, p := range byName {
		p.reading = make(chan struct{}, 1)
		a.parts = append(a.parts, p)
	}
	sort.Slice(a.parts, func(i, j int) bool { return a.parts[i].Name < a.parts[j].Name })
	a.partByName = byName
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st.Parts == nil {
		a.st.Parts = map[string]*partState{}
	}
	for _, p := range a.parts {
		if a.st.Parts[p.Name] == nil {
			a.st.Parts[p.Name] = &partState{Warn: map[string]string{}}
		}
		if a.st.Sensors[p.Name] == nil {
			a.st.Sensors[p.Name] = newPartSettings(p.NamedPart)
		}
	}
}

// newPartSettings is what desired state may change of a part, as the
// config sets it.
func newPartSettings(p config.NamedPart) *PartSettings {
	ps := &PartSettings{Limits: map[string]config.Limit{}, Alarm: p.Role == config.RoleAlarm,
		HasLimits: p.Sampled() || p.Type == config.TypePush, Armed: p.Armed}
	for k, l := range p.Limits {
		ps.Limits[k] = l
	}
	return ps
}

// envSampler makes the chocolate box's environment sensor a Sampler.
type envSampler struct{ s sensors.Sensor }

func (e envSampler) Read(ctx context.Context) (sensors.Values, error) {
	r, err := e.s.Read(ctx)
	if err != nil {
		return nil, err
	}
	return sensors.Values{"temperature_c": r.TemperatureC, "humidity_pct": r.HumidityPct, "pressure_kpa": r.PressureKPa}, nil
}

func (e envSampler) Close() error { return nil }

// withTelemetry reports whether p is read by the telemetry loop, just
// before each telemetry message (a sampled part with no interval of its
// own), rather than by the sampler on its own interval.
func (p *runPart) withTelemetry() bool { return p.smp != nil && p.IntervalS == 0 }

// readPart reads one sampled part and takes its readings in.
func (a *Agent) readPart(ctx context.Context, p *runPart, since *atomic.Int64) {
	v, err := p.read(ctx, since)
	if ctx.Err() != nil {
		return
	}
	a.takeReading(p, v, err)
}

// read reads the part once, after any read of it under way, bounded by
// maxReadTime; since (when not nil) holds when the read began, for the
// watchdog.
func (p *runPart) read(ctx context.Context, since *atomic.Int64) (sensors.Values, error) {
	select {
	case p.reading <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the read of %s under way: %w", p.Name, ctx.Err())
	}
	defer func() { <-p.reading }()
	rctx, cancel := context.WithTimeout(ctx, maxReadTime)
	defer cancel()
	if since != nil {
		since.Store(time.Now().UnixNano())
		defer since.Store(0)
	}
	return p.smp.Read(rctx)
}

// ReadPart reads a part's sampler once as the agent does (bounded by
// its per-read timeout, the readings checked), for sensors read without
// an agent; a failure is the text the agent reports for the part.
func ReadPart(ctx context.Context, np config.NamedPart, s sensors.Sampler) (sensors.Values, string) {
	rctx, cancel := context.WithTimeout(ctx, maxReadTime)
	defer cancel()
	v, err := s.Read(rctx)
	if err == nil {
		err = checkValues(v)
	}
	if err != nil {
		return nil, partError(np, err)
	}
	return v, ""
}

// sampleLoop reads the parts that have an interval of their own, each on
// its interval, one after the other in this one goroutine: it sleeps
// until the next part is due.
func (a *Agent) sampleLoop(ctx context.Context) {
	type due struct {
		p    *runPart
		next time.Time
	}
	var parts []*due
	now := time.Now()
	for _, p := range a.parts {
		if p.smp != nil && p.IntervalS > 0 {
			parts = append(parts, &due{p, now})
		}
	}
	if len(parts) == 0 {
		close(a.sampled)
		return
	}
	first := true
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := time.Time{}
		for _, d := range parts {
			if !time.Now().Before(d.next) {
				a.readPart(ctx, d.p, &a.sampleSince)
				d.next = time.Now().Add(time.Duration(d.p.IntervalS) * time.Second)
			}
			if next.IsZero() || d.next.Before(next) {
				next = d.next
			}
		}
		if ctx.Err() != nil {
			return
		}
		if first { // the first telemetry message waits for every part's first reading
			close(a.sampled)
			first = false
		}
		t.Reset(time.Until(next))
	}
}

// takeReading takes a part's readings (or read error) in: checks them,
// records them and raises or clears the warnings of their limits.
func (a *Agent) takeReading(p *runPart, v sensors.Values, err error) {
	if err == nil {
		err = checkValues(v)
	}
	now := a.now()
	var warns []map[string]any
	a.mu.Lock()
	ps := a.st.Parts[p.Name]
	if err != nil {
		a.st.ReadErrors++
		ps.Err = partError(p.NamedPart, err)
		a.st.LastError = fmt.Sprintf("read %s: %v", p.Name, err)
		a.mu.Unlock()
		a.log.Warn("sensor read failed", "sensor", p.Name, "err", err)
		signal(a.dirty)
		return
	}
	// Nothing to report when the readings are as reported (rounded as
	// the report rounds them) and no limit moves: a part read every
	// second then costs its read, not a reported document built and
	// compared each time.
	changed := ps.Err != "" || !sameRounded(ps.Values, v)
	ps.Err = ""
	ps.Values = v
	set := a.st.Sensors[p.Name]
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names)
	if p.Type != config.TypePush {
		dropped := a.learnReadings(p.Name, set, names)
		changed = changed || dropped
	}
	for _, r := range names {
		lim, ok := set.Limits[r]
		if w := a.threshold(p.Name, r, v[r], lim, ok, ps, now); w != nil {
			warns = append(warns, w)
		}
	}
	a.mu.Unlock()
	for _, w := range warns {
		a.log.Warn("threshold", "sensor", p.Name, "event", w["event"], "reading", w["reading"])
		a.enqueue(a.cfg.Topic(a.cfg.Topics.Warnings), outbox.Warning, w)
	}
	if changed || len(warns) > 0 {
		signal(a.dirty)
	}
}

// learnReadings adds names to the readings part name is known to have;
// once known, a limit it holds on any other reading (set in the config or
// through desired state before the part first read) is dropped, the
// refusal logged and shown in last_error beside the bad desired values. It
// reports whether a limit was dropped. Called with a.mu held.
func (a *Agent) learnReadings(name string, set *PartSettings, names []string) bool {
	if set.Readings == nil {
		set.Readings = map[string]bool{}
	}
	for _, r := range names {
		set.Readings[r] = true
	}
	var dropped []string
	for r := range set.Limits {
		if msg := set.unknownReading(name, r); msg != "" {
			delete(set.Limits, r)
			dropped = append(dropped, "sensors."+name+".limits."+r+": dropped: "+msg)
		}
	}
	sort.Strings(dropped)
	for _, d := range dropped {
		a.log.Warn("limit dropped", "problem", d)
		a.st.limitErrs = append(a.st.limitErrs, d)
	}
	return len(dropped) > 0
}

// sameRounded reports whether a and b have the same readings as the
// report shows them (round2).
func sameRounded(a, b sensors.Values) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || round2(x) != round2(y) {
			return false
		}
	}
	return true
}

// checkValues refuses readings that are not numbers, out of any sensible
// range, or badly named.
func checkValues(v sensors.Values) error {
	var bad []string
	for k, f := range v {
		switch {
		case !config.ReadingName(k):
			bad = append(bad, fmt.Sprintf("%q is not a reading name (want a-z 0-9 _)", k))
		case math.IsNaN(f) || math.IsInf(f, 0):
			bad = append(bad, fmt.Sprintf("%s is %v, not a number", k, f))
		case math.Abs(f) > maxAbsReading:
			bad = append(bad, fmt.Sprintf("%s is %g, out of range", k, f))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("%w: %s", errNonsense, strings.Join(bad, "; "))
}

var errNonsense = fmt.Errorf("nonsense readings")

// partError is the part's error as reported: what is wrong and what fixes
// it.
func partError(p config.NamedPart, err error) string {
	hint := "check the part's wiring and power"
	switch {
	case p.Type == config.TypePush:
		hint = "check the program that pushes its readings"
	case p.Sim:
		hint = "check the simulated part's settings"
	case p.Address != 0 || p.Bus != "":
		hint = fmt.Sprintf("check its wiring, power, I²C bus %q and address %#x (parts.%s)", p.Bus, p.Address, p.Name)
	case p.Device != "":
		hint = fmt.Sprintf("check its wiring and that device %q exists (parts.%s.device)", p.Device, p.Name)
	}
	s := err.Error() + "; " + hint
	if r := []rune(s); len(r) > 300 {
		s = string(r[:297]) + "..."
	}
	return s
}

// threshold raises or clears the warning of one reading against its
// limit; it returns the warning message to send, if any. Called with
// a.mu held.
func (a *Agent) threshold(part, reading string, v float64, l config.Limit, has bool, ps *partState, now time.Time) map[string]any {
	cur := ps.Warn[reading]
	next := ""
	if has {
		switch {
		case l.High != nil && v > *l.High:
			next = "high"
		case l.Low != nil && v < *l.Low:
			next = "low"
		case cur == "high" && l.High != nil && v > *l.High-l.Hysteresis:
			next = "high"
		case cur == "low" && l.Low != nil && v < *l.Low+l.Hysteresis:
			next = "low"
		}
	}
	if next == cur {
		return nil
	}
	if next == "" {
		delete(ps.Warn, reading)
	} else {
		ps.Warn[reading] = next
	}
	base, unit := reading, ""
	if i := strings.LastIndexByte(reading, '_'); i > 0 {
		base, unit = reading[:i], reading[i+1:]
	}
	shown := map[string]string{"c": " °C", "pct": " %", "kpa": " kPa", "": ""}[unit]
	if shown == "" && unit != "" {
		shown = " " + unit
	}
	limitKey := func(k string) string {
		if unit == "" {
			return k
		}
		return k + "_" + unit
	}
	w := map[string]any{"thing": a.cfg.ThingName, "sensor": part, "reading": reading, reading: round2(v), "timestamp": now.Unix()}
	side := next
	if next == "" {
		side = cur
	}
	var limit float64
	if side == "high" && l.High != nil {
		limit = *l.High
		w[limitKey("max")] = limit
	} else if l.Low != nil {
		limit = *l.Low
		w[limitKey("min")] = limit
	}
	switch {
	case next == "high":
		w["event"], w["message"] = base+"_high", fmt.Sprintf("%s %.1f%s above %.1f%s", base, v, shown, limit, shown)
	case next == "low":
		w["event"], w["message"] = base+"_low", fmt.Sprintf("%s %.1f%s below %.1f%s", base, v, shown, limit, shown)
	case side == "high":
		w["event"], w["message"] = base+"_normal", fmt.Sprintf("%s back to %.1f%s, at or below %.1f%s", base, v, shown, limit, shown)
	default:
		w["event"], w["message"] = base+"_normal", fmt.Sprintf("%s back to %.1f%s, at or above %.1f%s", base, v, shown, limit, shown)
	}
	if !has { // the limit was removed: say so
		w["message"] = fmt.Sprintf("%s: limit removed", base)
		delete(w, limitKey("max"))
		delete(w, limitKey("min"))
	}
	return w
}

// onInput handles a debounced change of an input (or an input event a
// local program pushed), by its part's role.
func (a *Agent) onInput(ev sensors.Event) {
	p := a.partByName[ev.Sensor]
	if p == nil {
		a.log.Warn("event of an unknown input", "sensor", ev.Sensor)
		return
	}
	now := a.now()
	var warn map[string]any
	a.mu.Lock()
	a.st.Events++
	ps := a.st.Parts[p.Name]
	rose := ev.Active && !ps.Active
	ps.Active = ev.Active
	alarm := false
	switch p.Role {
	case config.RoleAlarm:
		alarm = ev.Active && a.st.Armed && a.st.Sensors[p.Name].Armed
		if alarm {
			a.st.AlarmOn, a.st.LastAlarm, a.st.LastSensor = true, now.Unix(), ev.Sensor
		}
	case config.RoleCounter:
		if rose {
			ps.Count++
		}
	default: // state
		if p.WarnAfterS > 0 {
			if ps.activeTimer != nil {
				ps.activeTimer.Stop()
				ps.activeTimer = nil
			}
			if ev.Active {
				ps.activeTimer = time.AfterFunc(time.Duration(p.WarnAfterS)*time.Second, func() { a.activeTooLong(p) })
			} else if ps.Warn["active"] != "" {
				delete(ps.Warn, "active")
				warn = map[string]any{"thing": a.cfg.ThingName, "sensor": p.Name, "event": p.Name + "_normal",
					"message": p.Name + " no longer active", "timestamp": now.Unix()}
			}
		}
	}
	a.mu.Unlock()
	signal(a.dirty)
	if p.Role == config.RoleCounter {
		signal(a.countDirty)
	}
	if warn != nil {
		a.enqueue(a.cfg.Topic(a.cfg.Topics.Warnings), outbox.Warning, warn)
	}
	if !alarm {
		a.log.Debug("input changed", "sensor", ev.Sensor, "active", ev.Active)
		return
	}
	event := p.AlarmEvent()
	a.log.Warn("alarm", "sensor", ev.Sensor, "event", event)
	a.enqueue(a.cfg.Topic(a.cfg.Topics.Alarms), outbox.Alarm, map[string]any{
		"thing": a.cfg.ThingName, "sensor": ev.Sensor, "event": event, "message": p.AlarmMessage(), "timestamp": now.Unix(),
	})
}

// activeTooLong raises the warning of a state input left active for its
// warn_after_s.
func (a *Agent) activeTooLong(p *runPart) {
	a.mu.Lock()
	ps := a.st.Parts[p.Name]
	if !ps.Active || ps.Warn["active"] != "" {
		a.mu.Unlock()
		return
	}
	ps.Warn["active"] = "too long"
	a.mu.Unlock()
	signal(a.dirty)
	a.log.Warn("input left active", "sensor", p.Name, "after_s", p.WarnAfterS)
	a.enqueue(a.cfg.Topic(a.cfg.Topics.Warnings), outbox.Warning, map[string]any{"thing": a.cfg.ThingName, "sensor": p.Name,
		"event": p.Name + "_active_too_long", "message": fmt.Sprintf("%s active for more than %d s", p.Name, p.WarnAfterS),
		"active_s": p.WarnAfterS, "timestamp": a.now().Unix()})
}

// stopPartTimers stops the warn_after_s timers once the agent stops.
func (a *Agent) stopPartTimers() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ps := range a.st.Parts {
		if ps.activeTimer != nil {
			ps.activeTimer.Stop()
			ps.activeTimer = nil
		}
	}
}

// partsReport is reported.sensors (and, with forTelemetry, the sensors of
// a telemetry message: the readings only). Called with a.mu held.
func (a *Agent) partsReport(forTelemetry bool, now time.Time) map[string]any {
	out := make(map[string]any, len(a.parts))
	for _, p := range a.parts {
		ps := a.st.Parts[p.Name]
		m := map[string]any{}
		for k, v := range ps.Values {
			m[k] = round2(v)
		}
		if p.in != nil || p.Role != "" {
			m["active"] = ps.Active
		}
		if p.Role == config.RoleCounter {
			if forTelemetry {
				if !ps.rateAt.IsZero() && now.After(ps.rateAt) {
					ps.Rate = float64(ps.Count-ps.rateCount) / now.Sub(ps.rateAt).Minutes()
				}
				ps.rateCount, ps.rateAt = ps.Count, now
			}
			m["count"], m["rate_per_min"], m["rate_per_s"] = ps.Count, round2(ps.Rate), round2(ps.Rate/60)
		}
		if !forTelemetry {
			if ps.Err != "" {
				m["error"] = ps.Err
			}
			if len(ps.Warn) > 0 {
				w := make(map[string]any, len(ps.Warn))
				for k, v := range ps.Warn {
					w[k] = v
				}
				m["warning"] = w
			}
			set := a.st.Sensors[p.Name]
			if len(set.Limits) > 0 {
				m["limits"] = limitsReport(set.Limits)
			}
			if set.Alarm {
				m["armed"] = set.Armed
			}
		}
		out[p.Name] = m
	}
	return out
}

func limitsReport(ls map[string]config.Limit) map[string]any {
	out := make(map[string]any, len(ls))
	for r, l := range ls {
		m := map[string]any{"hysteresis": l.Hysteresis}
		if l.High != nil {
			m["high"] = *l.High
		}
		if l.Low != nil {
			m["low"] = *l.Low
		}
		out[r] = m
	}
	return out
}

// countersBucket holds each counter input's count (8 bytes, big endian)
// by part name.
var countersBucket = []byte("counters")

// loadCounts restores the counts of counter inputs from the state db.
func (a *Agent) loadCounts() error {
	return a.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(countersBucket)
		if b == nil {
			return nil
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, p := range a.parts {
			if v := b.Get([]byte(p.Name)); len(v) == 8 && p.Role == config.RoleCounter {
				ps := a.st.Parts[p.Name]
				ps.Count = binary.BigEndian.Uint64(v)
				ps.saved, ps.rateCount = ps.Count, ps.Count
			}
		}
		return nil
	})
}

// saveCounts writes the counts that changed since the last save.
func (a *Agent) saveCounts() {
	a.mu.Lock()
	changed := map[string]uint64{}
	for name, ps := range a.st.Parts {
		if ps.Count != ps.saved {
			changed[name] = ps.Count
		}
	}
	a.mu.Unlock()
	if len(changed) == 0 {
		return
	}
	err := a.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(countersBucket)
		if err != nil {
			return err
		}
		for name, n := range changed {
			if err := b.Put([]byte(name), binary.BigEndian.AppendUint64(nil, n)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		a.mu.Lock()
		a.st.LastError = fmt.Sprintf("save counters: %v", err)
		a.mu.Unlock()
		a.log.Warn("save counters failed; retrying with the next pulse", "err", err)
		return
	}
	a.mu.Lock()
	for name, n := range changed {
		a.st.Parts[name].saved = n
	}
	a.mu.Unlock()
}

// counterLoop persists counts at most once a second while pulses come,
// and once more when the agent stops, so that a restart loses no count.
func (a *Agent) counterLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			a.saveCounts()
			return
		case <-a.countDirty:
			a.saveCounts()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// push takes a parts.push request in: a push part's readings or input
// event, refused (400, naming the problem) for anything but a declared
// push part or for readings that are not numbers.
func (a *Agent) push(body []byte) (any, error) {
	req, msg := decodePush(body)
	if msg != "" {
		return nil, localapi.BadRequest("want {\"part\": name, \"values\": {reading: number}} or {\"part\": name, \"active\": bool}: %s", msg)
	}
	p := a.partByName[req.Part]
	switch {
	case p == nil || p.Type != config.TypePush:
		return nil, localapi.BadRequest("no part of type \"push\" called %q in the config (parts.<name>.type)", req.Part)
	case req.Values == nil && req.Active == nil:
		return nil, localapi.BadRequest("part %s: want \"values\" or \"active\"", req.Part)
	case req.Active != nil && p.Role == "":
		return nil, localapi.BadRequest("part %s has no role: it takes values, not events (parts.%s.role)", req.Part, req.Part)
	case len(req.Values) > 64:
		return nil, localapi.BadRequest("part %s: %d values, at most 64", req.Part, len(req.Values))
	}
	if req.Values != nil {
		if err := checkValues(req.Values); err != nil {
			a.takeReading(p, nil, err)
			return nil, localapi.BadRequest("part %s: %v", req.Part, err)
		}
		a.takeReading(p, sensors.Values(req.Values), nil)
	}
	if req.Active != nil {
		a.onInput(sensors.Event{Sensor: p.Name, Active: *req.Active, Time: a.now()})
	}
	return localapi.Done{OK: true}, nil
}

// decodePush reads a parts.push body key by key, so that a wrong value is
// named by its key (values.level_pct: want a number, got "41") rather
// than by the Go type it does not fit.
func decodePush(body []byte) (localapi.Push, string) {
	var req localapi.Push
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return req, "the body is not one JSON object"
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw := top[k]
		switch k {
		case "part":
			if err := json.Unmarshal(raw, &req.Part); err != nil {
				return req, fmt.Sprintf("part: want a string, got %s", rawType(raw))
			}
		case "active":
			var b bool
			if err := json.Unmarshal(raw, &b); err != nil {
				return req, fmt.Sprintf("active: want true or false, got %s", rawType(raw))
			}
			req.Active = &b
		case "values":
			var vals map[string]json.RawMessage
			if err := json.Unmarshal(raw, &vals); err != nil || vals == nil {
				return req, fmt.Sprintf("values: want an object of readings, got %s", rawType(raw))
			}
			names := make([]string, 0, len(vals))
			for r := range vals {
				names = append(names, r)
			}
			sort.Strings(names)
			req.Values = make(map[string]float64, len(vals))
			for _, r := range names {
				var f float64
				if err := json.Unmarshal(vals[r], &f); err != nil {
					return req, fmt.Sprintf("values.%s: must be a number, got %s", r, rawType(vals[r]))
				}
				req.Values[r] = f
			}
		default:
			return req, fmt.Sprintf("unknown key %q (want part, values, active)", k)
		}
	}
	return req, ""
}

// rawType names the JSON type of a raw value for a message.
func rawType(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "a value that is not JSON"
	}
	switch v.(type) {
	case float64:
		return "a number out of range"
	case string:
		return jsonText(v)
	}
	return jsonType(v)
}
