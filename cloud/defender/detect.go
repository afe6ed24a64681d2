package defender

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
)

// SecurityProfile is a Detect security profile. JSON names are AWS's.
type SecurityProfile struct {
	Name                        string                     `json:"securityProfileName"`
	ARN                         string                     `json:"securityProfileArn"`
	Description                 string                     `json:"securityProfileDescription,omitempty"`
	Behaviors                   []Behavior                 `json:"behaviors,omitempty"`
	AlertTargets                map[string]json.RawMessage `json:"alertTargets,omitempty"`
	AdditionalMetricsToRetain   []string                   `json:"additionalMetricsToRetain,omitempty"`
	AdditionalMetricsToRetainV2 json.RawMessage            `json:"additionalMetricsToRetainV2,omitempty"`
	MetricsExportConfig         json.RawMessage            `json:"metricsExportConfig,omitempty"`
	Version                     int64                      `json:"version"`
	CreationDate                time.Time                  `json:"creationDate"`
	LastModifiedDate            time.Time                  `json:"lastModifiedDate"`
	Targets                     []string                   `json:"targets,omitempty"` // attached target ARNs
}

// Behavior is one behaviour of a profile: the criteria describe normal
// behaviour; a datapoint that does not meet them is a violation.
type Behavior struct {
	Name            string           `json:"name"`
	Metric          string           `json:"metric,omitempty"`
	MetricDimension *json.RawMessage `json:"metricDimension,omitempty"`
	Criteria        *Criteria        `json:"criteria,omitempty"`
	SuppressAlerts  *bool            `json:"suppressAlerts,omitempty"`
	ExportMetric    *bool            `json:"exportMetric,omitempty"`
}

// Criteria is a BehaviorCriteria.
type Criteria struct {
	ComparisonOperator           string           `json:"comparisonOperator,omitempty"`
	Value                        *MetricValue     `json:"value,omitempty"`
	DurationSeconds              *int             `json:"durationSeconds,omitempty"`
	ConsecutiveDatapointsToAlarm *int             `json:"consecutiveDatapointsToAlarm,omitempty"`
	ConsecutiveDatapointsToClear *int             `json:"consecutiveDatapointsToClear,omitempty"`
	StatisticalThreshold         *json.RawMessage `json:"statisticalThreshold,omitempty"`
	MLDetectionConfig            *json.RawMessage `json:"mlDetectionConfig,omitempty"`
}

// MetricValue is AWS's MetricValue.
type MetricValue struct {
	Count   *int64    `json:"count,omitempty"`
	CIDRs   []string  `json:"cidrs,omitempty"`
	Ports   []int     `json:"ports,omitempty"`
	Number  *float64  `json:"number,omitempty"`
	Numbers []float64 `json:"numbers,omitempty"`
	Strings []string  `json:"strings,omitempty"`
}

// Violation event types.
const (
	EventInAlarm          = "in-alarm"
	EventAlarmCleared     = "alarm-cleared"
	EventAlarmInvalidated = "alarm-invalidated"
)

// ViolationEvent is one entry of ListViolationEvents.
type ViolationEvent struct {
	ViolationID         string      `json:"violationId"`
	ThingName           string      `json:"thingName"`
	SecurityProfileName string      `json:"securityProfileName"`
	Behavior            Behavior    `json:"behavior"`
	MetricValue         MetricValue `json:"metricValue"`
	ViolationEventType  string      `json:"violationEventType"`
	VerificationState   string      `json:"verificationState"`
	ViolationEventTime  time.Time   `json:"violationEventTime"`
}

// ActiveViolation is one entry of ListActiveViolations.
type ActiveViolation struct {
	ViolationID         string      `json:"violationId"`
	ThingName           string      `json:"thingName"`
	SecurityProfileName string      `json:"securityProfileName"`
	Behavior            Behavior    `json:"behavior"`
	LastViolationValue  MetricValue `json:"lastViolationValue"`
	VerificationState   string      `json:"verificationState"`
	LastViolationTime   time.Time   `json:"lastViolationTime"`
	ViolationStartTime  time.Time   `json:"violationStartTime"`
}

// Filter selects violations; empty fields match everything.
type Filter struct {
	ThingName           string
	SecurityProfileName string
}

func (f Filter) match(thing, profile string) bool {
	return (f.ThingName == "" || f.ThingName == thing) && (f.SecurityProfileName == "" || f.SecurityProfileName == profile)
}

// Metric kinds.
const (
	kindCount  = iota // compared with count/number
	kindPorts         // port sets
	kindCIDRs         // cidr sets
	kindCustom        // custom metric: depends on the value
	kindUnknown
)

type metricInfo struct {
	kind  int
	cloud bool // computed by iotsim from the broker's counters
}

var metricsKnown = map[string]metricInfo{
	"aws:all-bytes-out":                   {kind: kindCount},
	"aws:all-bytes-in":                    {kind: kindCount},
	"aws:all-packets-out":                 {kind: kindCount},
	"aws:all-packets-in":                  {kind: kindCount},
	"aws:num-listening-tcp-ports":         {kind: kindCount},
	"aws:num-listening-udp-ports":         {kind: kindCount},
	"aws:num-established-tcp-connections": {kind: kindCount},
	"aws:listening-tcp-ports":             {kind: kindPorts},
	"aws:listening-udp-ports":             {kind: kindPorts},
	"aws:destination-ip-addresses":        {kind: kindCIDRs},
	"aws:message-byte-size":               {kind: kindCount, cloud: true},
	"aws:num-messages-sent":               {kind: kindCount, cloud: true},
	"aws:num-messages-received":           {kind: kindCount, cloud: true},
	"aws:num-authorization-failures":      {kind: kindCount, cloud: true},
	"aws:source-ip-address":               {kind: kindCIDRs, cloud: true},
	"aws:num-connection-attempts":         {kind: kindCount, cloud: true},
	"aws:num-disconnects":                 {kind: kindCount, cloud: true},
}

var (
	nameRE    = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
	operators = map[string]int{
		"less-than": kindCount, "less-than-equals": kindCount, "greater-than": kindCount, "greater-than-equals": kindCount,
		"in-cidr-set": kindCIDRs, "not-in-cidr-set": kindCIDRs, "in-port-set": kindPorts, "not-in-port-set": kindPorts,
		"in-set": kindCustom, "not-in-set": kindCustom,
	}
	durations = []int{300, 600, 900, 1800, 3600}
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// validateProfile checks a profile as CreateSecurityProfile does.
func validateProfile(p *SecurityProfile) error {
	if !nameRE.MatchString(p.Name) {
		return invalidf("securityProfileName %q must be 1-128 of [a-zA-Z0-9:_-]", truncate(p.Name, 140))
	}
	if len(p.Description) > 1000 {
		return invalidf("securityProfileDescription is longer than 1000 characters")
	}
	if len(p.Behaviors) > 100 {
		return invalidf("a security profile has at most 100 behaviors")
	}
	seen := map[string]bool{}
	for i := range p.Behaviors {
		b := &p.Behaviors[i]
		if !nameRE.MatchString(b.Name) {
			return invalidf("behaviors[%d].name %q must be 1-128 of [a-zA-Z0-9:_-]", i, truncate(b.Name, 140))
		}
		if seen[b.Name] {
			return invalidf("behavior name %q is used twice", b.Name)
		}
		seen[b.Name] = true
		info, known := metricsKnown[b.Metric]
		if !known {
			if strings.HasPrefix(b.Metric, "aws:") {
				return invalidf("behaviors[%d].metric %q is not a Device Defender metric", i, b.Metric)
			}
			if b.Metric == "" && (b.Criteria == nil || b.Criteria.MLDetectionConfig == nil) {
				return invalidf("behaviors[%d].metric is required", i)
			}
			info = metricInfo{kind: kindCustom}
		}
		c := b.Criteria
		if c == nil {
			return invalidf("behaviors[%d].criteria is required", i)
		}
		if c.MLDetectionConfig != nil {
			continue // ML Detect: stored, not evaluated
		}
		opKind, ok := operators[c.ComparisonOperator]
		if !ok {
			return invalidf("behaviors[%d].criteria.comparisonOperator %q is not one of less-than, less-than-equals, greater-than, greater-than-equals, in-cidr-set, not-in-cidr-set, in-port-set, not-in-port-set, in-set, not-in-set", i, c.ComparisonOperator)
		}
		if info.kind != kindCustom && opKind != info.kind && !(info.kind == kindCount && opKind == kindCount) {
			return invalidf("behaviors[%d]: operator %s does not apply to metric %s", i, c.ComparisonOperator, b.Metric)
		}
		if c.Value == nil && c.StatisticalThreshold == nil {
			return invalidf("behaviors[%d].criteria needs a value or a statisticalThreshold", i)
		}
		if v := c.Value; v != nil {
			switch opKind {
			case kindCount:
				if v.Count == nil && v.Number == nil {
					return invalidf("behaviors[%d].criteria.value needs count or number for %s", i, c.ComparisonOperator)
				}
			case kindPorts:
				for _, p := range v.Ports {
					if p < 0 || p > 65535 {
						return invalidf("behaviors[%d].criteria.value.ports: %d is not a port", i, p)
					}
				}
			case kindCIDRs:
				for _, s := range v.CIDRs {
					if _, ok := parseCIDR(s); !ok {
						return invalidf("behaviors[%d].criteria.value.cidrs: %q is not a CIDR", i, truncate(s, 64))
					}
				}
			}
		}
		if d := c.DurationSeconds; d != nil && !slices.Contains(durations, *d) {
			return invalidf("behaviors[%d].criteria.durationSeconds %d must be one of 300, 600, 900, 1800, 3600", i, *d)
		}
		for _, n := range []*int{c.ConsecutiveDatapointsToAlarm, c.ConsecutiveDatapointsToClear} {
			if n != nil && (*n < 1 || *n > 10) {
				return invalidf("behaviors[%d].criteria: consecutive datapoints %d must be 1 to 10", i, *n)
			}
		}
	}
	return nil
}

func parseCIDR(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), true
	}
	return netip.Prefix{}, false
}

func (s *Service) arn(kind, name string) string {
	return "arn:aws:iot:" + s.o.Registry.Region() + ":" + s.o.Registry.Account() + ":" + kind + "/" + name
}

// CreateSecurityProfile stores a new profile; ErrExists if the name is taken.
func (s *Service) CreateSecurityProfile(p SecurityProfile) (SecurityProfile, error) {
	if err := validateProfile(&p); err != nil {
		return SecurityProfile{}, err
	}
	now := s.o.Now()
	p.ARN = s.arn("securityprofile", p.Name)
	p.Version, p.CreationDate, p.LastModifiedDate, p.Targets = 1, now, now, nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.profiles[p.Name]; ok {
		return SecurityProfile{}, fmt.Errorf("security profile %s: %w", p.Name, ErrExists)
	}
	if err := s.o.DB.PutJSON(bucketProfiles, p.Name, &p); err != nil {
		return SecurityProfile{}, fmt.Errorf("store security profile: %w", err)
	}
	s.profiles[p.Name] = &p
	s.updateFlagsLocked()
	return p, nil
}

// DescribeSecurityProfile returns a profile or ErrNotFound.
func (s *Service) DescribeSecurityProfile(name string) (SecurityProfile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[name]
	if !ok {
		return SecurityProfile{}, fmt.Errorf("security profile %s: %w", name, ErrNotFound)
	}
	return *p, nil
}

// AttachSecurityProfile attaches a profile to a target: a thing group ARN
// or arn:aws:iot:<region>:<account>:all/things | all/registered-things |
// all/unregistered-things.
func (s *Service) AttachSecurityProfile(name, target string) error {
	prefix := "arn:aws:iot:" + s.o.Registry.Region() + ":" + s.o.Registry.Account() + ":"
	rest, ok := strings.CutPrefix(target, prefix)
	switch {
	case !ok:
		return invalidf("securityProfileTargetArn %q is not an ARN of this account and region", truncate(target, 200))
	case rest == "all/things", rest == "all/registered-things", rest == "all/unregistered-things":
	case strings.HasPrefix(rest, "thinggroup/") && nameRE.MatchString(strings.TrimPrefix(rest, "thinggroup/")):
	default:
		return invalidf("securityProfileTargetArn %q is not a thing group or all/things, all/registered-things, all/unregistered-things", truncate(target, 200))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[name]
	if !ok {
		return fmt.Errorf("security profile %s: %w", name, ErrNotFound)
	}
	if slices.Contains(p.Targets, target) {
		return nil
	}
	cp := *p
	cp.Targets = append(slices.Clone(p.Targets), target)
	if err := s.o.DB.PutJSON(bucketProfiles, name, &cp); err != nil {
		return fmt.Errorf("store security profile: %w", err)
	}
	s.profiles[name] = &cp
	return nil
}

func (s *Service) updateFlagsLocked() {
	size := false
	for _, p := range s.profiles {
		for _, b := range p.Behaviors {
			size = size || b.Metric == "aws:message-byte-size"
		}
	}
	s.hasSizeBehavior.Store(size)
}

// profilesFor returns the profiles that apply to thing. It must be called
// without s.mu held (it asks the registry).
func (s *Service) profilesFor(thing string) []*SecurityProfile {
	_, err := s.o.Registry.DescribeThing(thing)
	registered := err == nil
	var groups []string
	if registered && s.o.ThingGroupsOf != nil {
		groups, _ = s.o.ThingGroupsOf(thing)
	}
	prefix := "arn:aws:iot:" + s.o.Registry.Region() + ":" + s.o.Registry.Account() + ":"
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*SecurityProfile
	for _, p := range s.profiles {
		for _, t := range p.Targets {
			rest := strings.TrimPrefix(t, prefix)
			g, isGroup := strings.CutPrefix(rest, "thinggroup/")
			if rest == "all/things" || rest == "all/registered-things" && registered ||
				rest == "all/unregistered-things" && !registered || isGroup && slices.Contains(groups, g) {
				out = append(out, p)
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b *SecurityProfile) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Detect state.

type stateKey struct{ thing, profile, behavior string }

type detectState struct {
	bad, good   int
	inAlarm     bool
	violationID string
	start, last time.Time // violation start, last violating datapoint
	lastData    time.Time // last datapoint of any kind
	lastValue   MetricValue
	behavior    Behavior
}

// datapoint evaluates one datapoint of b for thing. Callers hold s.mu.
func (s *Service) datapointLocked(thing string, p *SecurityProfile, b Behavior, v MetricValue, now time.Time) {
	c := b.Criteria
	if c == nil || c.MLDetectionConfig != nil || c.Value == nil {
		return // statistical and ML thresholds are not evaluated
	}
	k := stateKey{thing, p.Name, b.Name}
	st := s.states[k]
	if st == nil {
		st = &detectState{}
		s.states[k] = st
	}
	st.behavior, st.lastData = b, now
	ok := conforms(c.ComparisonOperator, v, *c.Value)
	if ok {
		st.good++
		st.bad = 0
	} else {
		st.bad++
		st.good = 0
		st.last, st.lastValue = now, v
	}
	toAlarm, toClear := 1, 1
	if c.ConsecutiveDatapointsToAlarm != nil {
		toAlarm = *c.ConsecutiveDatapointsToAlarm
	}
	if c.ConsecutiveDatapointsToClear != nil {
		toClear = *c.ConsecutiveDatapointsToClear
	}
	switch {
	case !st.inAlarm && st.bad >= toAlarm:
		s.nextViol++
		st.inAlarm, st.start = true, now
		st.violationID = fmt.Sprintf("%016x%016x", now.UnixNano(), s.nextViol)
		s.eventLocked(st, thing, p.Name, EventInAlarm, v, now)
	case st.inAlarm && st.good >= toClear:
		st.inAlarm = false
		s.eventLocked(st, thing, p.Name, EventAlarmCleared, v, now)
	}
}

func (s *Service) eventLocked(st *detectState, thing, profile, typ string, v MetricValue, now time.Time) {
	s.events = append(s.events, ViolationEvent{
		ViolationID: st.violationID, ThingName: thing, SecurityProfileName: profile, Behavior: st.behavior,
		MetricValue: v, ViolationEventType: typ, VerificationState: "UNKNOWN", ViolationEventTime: now,
	})
	// Keep 14 days and at most maxEvents.
	cut := 0
	for cut < len(s.events) && (len(s.events)-cut > maxEvents || now.Sub(s.events[cut].ViolationEventTime) > eventRetention) {
		cut++
	}
	if cut > 0 {
		s.events = append(s.events[:0:0], s.events[cut:]...)
	}
	s.log.Info("defender violation", "thing", thing, "profile", profile, "behavior", st.behavior.Name, "event", typ)
}

// conforms reports whether datapoint v meets the criteria (true = normal).
func conforms(op string, v, want MetricValue) bool {
	switch op {
	case "less-than", "less-than-equals", "greater-than", "greater-than-equals":
		got, ok1 := v.number()
		lim, ok2 := want.number()
		if !ok1 || !ok2 {
			return true
		}
		switch op {
		case "less-than":
			return got < lim
		case "less-than-equals":
			return got <= lim
		case "greater-than":
			return got > lim
		}
		return got >= lim
	case "in-port-set", "not-in-port-set":
		in := op == "in-port-set"
		for _, p := range v.Ports {
			if slices.Contains(want.Ports, p) != in {
				return false
			}
		}
		return true
	case "in-cidr-set", "not-in-cidr-set":
		in := op == "in-cidr-set"
		for _, s := range v.CIDRs {
			a, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			a = a.Unmap()
			hit := false
			for _, c := range want.CIDRs {
				if p, ok := parseCIDR(c); ok && p.Contains(a) {
					hit = true
					break
				}
			}
			if hit != in {
				return false
			}
		}
		return true
	case "in-set", "not-in-set":
		in := op == "in-set"
		for _, n := range v.Numbers {
			if slices.Contains(want.Numbers, n) != in {
				return false
			}
		}
		for _, x := range v.Strings {
			if slices.Contains(want.Strings, x) != in {
				return false
			}
		}
		return true
	}
	return true
}

func (v MetricValue) number() (float64, bool) {
	switch {
	case v.Count != nil:
		return float64(*v.Count), true
	case v.Number != nil:
		return *v.Number, true
	}
	return 0, false
}

func countValue(n int64) MetricValue { return MetricValue{Count: &n} }

// deviceValue extracts metric from a report; ok is false when the report
// does not carry it.
func deviceValue(metric string, m *DeviceMetrics) (MetricValue, bool) {
	switch metric {
	case "aws:all-bytes-out", "aws:all-bytes-in", "aws:all-packets-out", "aws:all-packets-in":
		ns := m.NetworkStats
		if ns == nil {
			return MetricValue{}, false
		}
		return countValue(map[string]int64{
			"aws:all-bytes-out": ns.BytesOut, "aws:all-bytes-in": ns.BytesIn,
			"aws:all-packets-out": ns.PacketsOut, "aws:all-packets-in": ns.PacketsIn,
		}[metric]), true
	case "aws:num-listening-tcp-ports", "aws:listening-tcp-ports":
		return portsValue(metric, m.TCPPorts)
	case "aws:num-listening-udp-ports", "aws:listening-udp-ports":
		return portsValue(metric, m.UDPPorts)
	case "aws:num-established-tcp-connections":
		if m.Established == nil {
			return MetricValue{}, false
		}
		return countValue(m.Established.Total), true
	case "aws:destination-ip-addresses":
		if m.Established == nil {
			return MetricValue{}, false
		}
		return MetricValue{CIDRs: m.Established.RemoteAddrs}, true
	}
	if _, known := metricsKnown[metric]; known {
		return MetricValue{}, false
	}
	c, ok := m.CustomMetrics[metric]
	if !ok {
		return MetricValue{}, false
	}
	switch {
	case c.Number != nil:
		return MetricValue{Number: c.Number}, true
	case c.NumberList != nil:
		return MetricValue{Numbers: c.NumberList}, true
	case c.StringList != nil:
		return MetricValue{Strings: c.StringList}, true
	}
	return MetricValue{CIDRs: c.IPList}, true
}

func portsValue(metric string, p *PortsMetric) (MetricValue, bool) {
	if p == nil {
		return MetricValue{}, false
	}
	if strings.HasPrefix(metric, "aws:num-") {
		return countValue(p.Total), true
	}
	return MetricValue{Ports: p.Ports}, true
}

// evaluateReport runs the device-side behaviours on an accepted report.
func (s *Service) evaluateReport(thing string, m *DeviceMetrics, now time.Time) {
	profiles := s.profilesFor(thing)
	if len(profiles) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range profiles {
		for _, b := range p.Behaviors {
			if metricsKnown[b.Metric].cloud {
				continue
			}
			if v, ok := deviceValue(b.Metric, m); ok {
				s.datapointLocked(thing, p, b, v, now)
			}
		}
	}
}

// HandleMessage is a broker handler for every device message: it evaluates
// aws:message-byte-size. It costs nothing while no profile uses that metric.
func (s *Service) HandleMessage(p *broker.Principal, _ string, payload []byte) {
	if !s.hasSizeBehavior.Load() {
		return
	}
	thing := p.ThingName
	if thing == "" {
		thing = p.ClientID
	}
	profiles := s.profilesFor(thing)
	now := s.o.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, prof := range profiles {
		for _, b := range prof.Behaviors {
			if b.Metric == "aws:message-byte-size" {
				s.datapointLocked(thing, prof, b, countValue(int64(len(payload))), now)
			}
		}
	}
}

// sample is the broker's counters for one client at one time.
type sample struct {
	at time.Time
	m  broker.ClientMetrics
}

// EvaluateCloud evaluates the cloud-side counter metrics of every client
// the broker has seen (the client id is the thing name), each over its
// behaviour's durationSeconds (300 s if unset), and invalidates violations
// of things silent for 2 days. Run calls it every Tick.
func (s *Service) EvaluateCloud(now time.Time) {
	var all map[string]broker.ClientMetrics
	if s.o.Metrics != nil {
		all = s.o.Metrics()
	}
	applicable := map[string][]*SecurityProfile{}
	for id := range all {
		applicable[id] = s.profilesFor(id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, cur := range all {
		hist := s.samples[id]
		for _, p := range applicable[id] {
			for _, b := range p.Behaviors {
				info := metricsKnown[b.Metric]
				if !info.cloud || b.Metric == "aws:message-byte-size" {
					continue
				}
				if b.Metric == "aws:source-ip-address" {
					if cur.SourceIP != "" {
						s.datapointLocked(id, p, b, MetricValue{CIDRs: []string{cur.SourceIP}}, now)
					}
					continue
				}
				d := 300 * time.Second
				if b.Criteria != nil && b.Criteria.DurationSeconds != nil {
					d = time.Duration(*b.Criteria.DurationSeconds) * time.Second
				}
				base := baseline(hist, now.Add(-d))
				s.datapointLocked(id, p, b, countValue(counter(b.Metric, cur)-counter(b.Metric, base)), now)
			}
		}
		// Keep an hour of samples (the longest duration), at least one.
		hist = append(hist, sample{now, cur})
		cut := 0
		for cut < len(hist)-1 && now.Sub(hist[cut+1].at) >= time.Hour {
			cut++
		}
		s.samples[id] = append(hist[:0:0], hist[cut:]...)
	}
	for k, st := range s.states {
		if st.inAlarm && now.Sub(st.lastData) > invalidateAfter {
			st.inAlarm, st.bad, st.good = false, 0, 0
			s.eventLocked(st, k.thing, k.profile, EventAlarmInvalidated, st.lastValue, now)
		}
	}
}

// baseline is the last sample taken at or before t, else the oldest one,
// else zero counters.
func baseline(hist []sample, t time.Time) broker.ClientMetrics {
	if len(hist) == 0 {
		return broker.ClientMetrics{}
	}
	best := hist[0].m
	for _, h := range hist {
		if h.at.After(t) {
			break
		}
		best = h.m
	}
	return best
}

func counter(metric string, m broker.ClientMetrics) int64 {
	switch metric {
	case "aws:num-messages-sent":
		return m.MessagesSent
	case "aws:num-messages-received":
		return m.MessagesReceived
	case "aws:num-authorization-failures":
		return m.AuthorizationFailures
	case "aws:num-connection-attempts":
		return m.ConnectionAttempts
	case "aws:num-disconnects":
		return m.Disconnects
	}
	return 0
}

// ListActiveViolations returns the violations in alarm, oldest first.
func (s *Service) ListActiveViolations(f Filter) []ActiveViolation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ActiveViolation
	for k, st := range s.states {
		if !st.inAlarm || !f.match(k.thing, k.profile) {
			continue
		}
		out = append(out, ActiveViolation{
			ViolationID: st.violationID, ThingName: k.thing, SecurityProfileName: k.profile, Behavior: st.behavior,
			LastViolationValue: st.lastValue, VerificationState: "UNKNOWN", LastViolationTime: st.last, ViolationStartTime: st.start,
		})
	}
	slices.SortFunc(out, func(a, b ActiveViolation) int {
		if c := a.ViolationStartTime.Compare(b.ViolationStartTime); c != 0 {
			return c
		}
		return strings.Compare(a.ViolationID, b.ViolationID)
	})
	return out
}

// ListViolationEvents returns the events in [start, end], oldest first.
func (s *Service) ListViolationEvents(start, end time.Time, f Filter) []ViolationEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ViolationEvent
	for _, e := range s.events {
		if !e.ViolationEventTime.Before(start) && !e.ViolationEventTime.After(end) && f.match(e.ThingName, e.SecurityProfileName) {
			out = append(out, e)
		}
	}
	return out
}
