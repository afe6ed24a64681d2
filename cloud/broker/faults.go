package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault injection: iotsim as a device-qualification lab. A Fault, added
// at run time (AddFault, the REST API, `iotsim fault add`) or at start
// (`iotsim serve --faults FILE`), makes the broker misbehave the way AWS IoT
// Core can, for the clients and topics it aims at. Every injection is
// logged, counted per fault and kept in a short history (Faults). With no
// fault added, the broker's paths cost one atomic load more than without
// the feature (BenchmarkPublishFanout).

// Fault kinds.
const (
	// FaultDrop drops an acknowledgement (or a delivery) the broker
	// writes: Packet is connack, puback, suback, unsuback, pingresp or
	// publish (a message delivered to the client).
	FaultDrop = "drop"
	// FaultDelay writes it Delay later (a CONNACK holds back everything
	// after it; other packets are overtaken by later ones).
	FaultDelay = "delay"
	// FaultRefuseConnect refuses a CONNECT with CONNACK Code, or, with
	// Code 0, closes the connection without a CONNACK, as AWS does with
	// MQTT 3.1.1 clients.
	FaultRefuseConnect = "refuse-connect"
	// FaultThrottleConnect refuses a CONNECT as AWS's CONNECT rate limit
	// does (MQTT 3.1.1: closed without CONNACK; MQTT 5: CONNACK 0x9F).
	FaultThrottleConnect = "throttle-connect"
	// FaultCloseAfter closes a connection once the client has sent Packets
	// packets (counted from the first packet read while a fault is active).
	FaultCloseAfter = "close-after"
	// FaultCloseOnPublish closes the connection on a PUBLISH to a topic
	// matching Topic, before the message is processed (no PUBACK).
	FaultCloseOnPublish = "close-on-publish"
	// FaultDuplicate delivers a message twice (the copy of a QoS 1
	// message has the DUP flag).
	FaultDuplicate = "duplicate"
	// FaultThrottleJobs answers a Jobs MQTT request with RequestThrottled
	// on its .../rejected topic instead of serving it.
	FaultThrottleJobs = "throttle-jobs"
	// FaultThrottleShadow answers a shadow get, update or delete with
	// error 429 on its .../rejected topic instead of serving it.
	FaultThrottleShadow = "throttle-shadow"
	// FaultExpireSession discards a client's offline persistent session
	// when it reconnects (CONNACK session present 0, no subscriptions, no
	// queued messages), as AWS does after the session expiry period.
	FaultExpireSession = "expire-session"
	// FaultDisconnect closes connections once they are After old (0: at
	// once, and each new connection as soon as it is up): AWS's
	// disconnect of every connection at 24 hours, on demand.
	FaultDisconnect = "disconnect"
)

// FaultKinds lists the kinds, for help texts and validation.
var FaultKinds = []string{FaultDrop, FaultDelay, FaultRefuseConnect, FaultThrottleConnect, FaultCloseAfter,
	FaultCloseOnPublish, FaultDuplicate, FaultThrottleJobs, FaultThrottleShadow, FaultExpireSession, FaultDisconnect}

// FaultPackets lists the packets drop and delay apply to.
var FaultPackets = []string{"connack", "puback", "suback", "unsuback", "pingresp", "publish"}

// packet types by FaultPackets name.
var faultPacketTypes = map[string]byte{"connack": 2, "puback": 4, "suback": 9, "unsuback": 11, "pingresp": 13, "publish": 3}

var (
	// ErrInvalidFault: AddFault was given a fault it cannot inject.
	ErrInvalidFault = errors.New("invalid fault")
	// ErrNoFault: no fault with that id.
	ErrNoFault = errors.New("no such fault")
)

// Duration is a time.Duration written in JSON as a Go duration string
// ("250ms", "24h").
type Duration time.Duration

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string ("1.5s").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"2s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Fault is one fault to inject. Client and Topic aim it (both must match
// when both are set); Probability, Count and Duration bound it.
type Fault struct {
	// ID names the fault; AddFault assigns "f1", "f2", ... when empty.
	ID   string `json:"id,omitempty"`
	Kind string `json:"kind"`
	// Packet is what drop and delay act on (FaultPackets).
	Packet string `json:"packet,omitempty"`
	// Client is a client id pattern: '*' matches any run of characters.
	// Empty matches every client.
	Client string `json:"client,omitempty"`
	// Topic is an MQTT topic filter: the PUBLISH's topic (puback, publish,
	// close-on-publish, duplicate, throttle-*), or a filter of the
	// SUBSCRIBE or UNSUBSCRIBE (suback, unsuback). Empty matches all.
	Topic string `json:"topic,omitempty"`
	// Probability of injecting at each chance, in (0, 1]; 0 (omitted)
	// means 1.
	Probability float64 `json:"probability,omitempty"`
	// Count is how many injections at most; 0 means no limit.
	Count int64 `json:"count,omitempty"`
	// Duration is how long the fault stays active after it is added; 0
	// means until removed.
	Duration Duration `json:"duration,omitempty"`
	// Delay is the delay of kind delay.
	Delay Duration `json:"delay,omitempty"`
	// Code is refuse-connect's CONNACK code: MQTT 3.1.1's 1..5 or MQTT
	// 5's 0x80..0xFF (each mapped for the other version); 0 hangs up.
	Code int `json:"code,omitempty"`
	// Packets is close-after's packet count.
	Packets int64 `json:"packets,omitempty"`
	// After is disconnect's connection age.
	After Duration `json:"after,omitempty"`
}

// Validate reports every problem of f at once, wrapping ErrInvalidFault.
func (f Fault) Validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if !slices.Contains(FaultKinds, f.Kind) {
		bad("kind %q: want one of %s", f.Kind, strings.Join(FaultKinds, ", "))
	}
	if f.ID != "" && (len(f.ID) > 64 || strings.Trim(f.ID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != "") {
		bad("id %q: want at most 64 letters, digits, '_', '.' or '-'", f.ID)
	}
	switch f.Kind {
	case FaultDrop, FaultDelay:
		if _, ok := faultPacketTypes[f.Packet]; !ok {
			bad("packet %q: want one of %s", f.Packet, strings.Join(FaultPackets, ", "))
		}
	default:
		if f.Packet != "" {
			bad("packet: only for kinds drop and delay")
		}
	}
	if (f.Kind == FaultDelay) != (f.Delay > 0) {
		if f.Kind == FaultDelay {
			bad("delay: kind delay needs a positive delay")
		} else {
			bad("delay: only for kind delay")
		}
	}
	if f.Delay < 0 {
		bad("delay %v: negative", time.Duration(f.Delay))
	}
	switch {
	case f.Kind == FaultRefuseConnect && f.Code != 0 && !(f.Code >= 1 && f.Code <= 5 || f.Code >= 0x80 && f.Code <= 0xFF):
		bad("code %d: want 0 (hang up), 1..5 (MQTT 3.1.1) or 128..255 (MQTT 5)", f.Code)
	case f.Kind != FaultRefuseConnect && f.Code != 0:
		bad("code: only for kind refuse-connect")
	}
	switch {
	case f.Kind == FaultCloseAfter && f.Packets < 1:
		bad("packets: kind close-after needs packets >= 1")
	case f.Kind != FaultCloseAfter && f.Packets != 0:
		bad("packets: only for kind close-after")
	}
	if f.After != 0 && f.Kind != FaultDisconnect || f.After < 0 {
		bad("after %v: only for kind disconnect, and not negative", time.Duration(f.After))
	}
	if f.Kind == FaultCloseOnPublish && f.Topic == "" {
		bad("topic: kind close-on-publish needs a topic filter")
	}
	if f.Topic != "" {
		if err := CheckFilter(f.Topic); err != nil {
			bad("topic %q: %v", f.Topic, err)
		}
	}
	if f.Probability < 0 || f.Probability > 1 || f.Probability != f.Probability {
		bad("probability %v: want 0 < p <= 1 (omitted: 1)", f.Probability)
	}
	if f.Count < 0 {
		bad("count %d: negative", f.Count)
	}
	if f.Duration < 0 {
		bad("duration %v: negative", time.Duration(f.Duration))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidFault, strings.Join(errs, "; "))
	}
	return nil
}

// FaultStatus is a fault as Faults reports it.
type FaultStatus struct {
	Fault
	Added time.Time `json:"added"`
	// Expires is when Duration ends (absent without one).
	Expires *time.Time `json:"expires,omitempty"`
	// Injected counts the injections so far.
	Injected int64 `json:"injected"`
	// Active is false once the fault expired or used up its Count.
	Active bool `json:"active"`
}

// FaultEvent is one injection.
type FaultEvent struct {
	Time   time.Time `json:"time"`
	Fault  string    `json:"fault"` // the fault's id
	Kind   string    `json:"kind"`
	Client string    `json:"client,omitempty"`
	Topic  string    `json:"topic,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// FaultReport is what Faults returns: the faults, the latest injections
// (oldest first, at most MaxFaultEvents) and the total injected since
// start.
type FaultReport struct {
	Faults   []FaultStatus `json:"faults"`
	Events   []FaultEvent  `json:"events"`
	Injected int64         `json:"injected"`
}

// MaxFaultEvents bounds the injection history Faults returns.
const MaxFaultEvents = 256

// activeFault is a fault as the broker holds it.
type activeFault struct {
	Fault
	kind     uint16 // 1 << index in FaultKinds
	added    time.Time
	expires  time.Time // zero: never
	injected atomic.Int64
	left     atomic.Int64 // injections left when Count > 0
}

// faultSet is an immutable snapshot of the faults, swapped on change.
type faultSet struct {
	list  []*activeFault
	kinds uint16 // union of the kinds in list
}

func kindBit(kind string) uint16 { return 1 << slices.Index(FaultKinds, kind) }

func (s *faultSet) has(kind string) bool { return s != nil && s.kinds&kindBit(kind) != 0 }

// faultState is the broker's fault engine.
type faultState struct {
	set atomic.Pointer[faultSet] // nil while no fault is added

	mu       sync.Mutex // guards the fields below and writes of set
	nextID   int
	events   []FaultEvent // ring of MaxFaultEvents
	head     int
	injected int64
}

// AddFault validates f and starts injecting it. It returns the fault as
// added (with its id).
func (b *Broker) AddFault(f Fault) (FaultStatus, error) {
	if err := f.Validate(); err != nil {
		return FaultStatus{}, err
	}
	fs := &b.faults
	fs.mu.Lock()
	old := fs.set.Load()
	if f.ID == "" {
		for {
			fs.nextID++
			f.ID = "f" + strconv.Itoa(fs.nextID)
			if old == nil || !slices.ContainsFunc(old.list, func(a *activeFault) bool { return a.ID == f.ID }) {
				break
			}
		}
	} else if old != nil && slices.ContainsFunc(old.list, func(a *activeFault) bool { return a.ID == f.ID }) {
		fs.mu.Unlock()
		return FaultStatus{}, fmt.Errorf("%w: id %q is taken", ErrInvalidFault, f.ID)
	}
	a := &activeFault{Fault: f, kind: kindBit(f.Kind), added: b.now()}
	if f.Duration > 0 {
		a.expires = a.added.Add(time.Duration(f.Duration))
	}
	a.left.Store(f.Count)
	next := &faultSet{kinds: a.kind}
	if old != nil {
		next.list = append(next.list, old.list...)
		next.kinds |= old.kinds
	}
	next.list = append(next.list, a)
	fs.set.Store(next)
	fs.mu.Unlock()
	b.log.Info("fault added", "fault", f.ID, "kind", f.Kind, "packet", f.Packet, "client", f.Client, "topic", f.Topic)
	if f.Kind == FaultDisconnect {
		b.scheduleDisconnects(a)
	}
	return a.status(b.now()), nil
}

// RemoveFault stops injecting the fault id.
func (b *Broker) RemoveFault(id string) error {
	fs := &b.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	old := fs.set.Load()
	if old == nil {
		return fmt.Errorf("remove fault %q: %w", id, ErrNoFault)
	}
	i := slices.IndexFunc(old.list, func(a *activeFault) bool { return a.ID == id })
	if i < 0 {
		return fmt.Errorf("remove fault %q: %w", id, ErrNoFault)
	}
	b.storeFaultsLocked(slices.Delete(slices.Clone(old.list), i, i+1))
	b.log.Info("fault removed", "fault", id)
	return nil
}

// ClearFaults removes every fault and returns how many there were. The
// injection history and the total stay.
func (b *Broker) ClearFaults() int {
	fs := &b.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	old := fs.set.Load()
	if old == nil {
		return 0
	}
	fs.set.Store(nil)
	b.log.Info("faults cleared", "count", len(old.list))
	return len(old.list)
}

func (b *Broker) storeFaultsLocked(list []*activeFault) {
	if len(list) == 0 {
		b.faults.set.Store(nil)
		return
	}
	next := &faultSet{list: list}
	for _, a := range list {
		next.kinds |= a.kind
	}
	b.faults.set.Store(next)
}

// Faults reports the faults, the latest injections and the total.
func (b *Broker) Faults() FaultReport {
	fs := &b.faults
	now := b.now()
	r := FaultReport{Faults: []FaultStatus{}, Events: []FaultEvent{}}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if set := fs.set.Load(); set != nil {
		for _, a := range set.list {
			r.Faults = append(r.Faults, a.status(now))
		}
	}
	if len(fs.events) == MaxFaultEvents {
		r.Events = append(r.Events, fs.events[fs.head:]...)
		r.Events = append(r.Events, fs.events[:fs.head]...)
	} else {
		r.Events = append(r.Events, fs.events...)
	}
	r.Injected = fs.injected
	return r
}

func (a *activeFault) status(now time.Time) FaultStatus {
	s := FaultStatus{Fault: a.Fault, Added: a.added, Injected: a.injected.Load()}
	if !a.expires.IsZero() {
		e := a.expires
		s.Expires = &e
	}
	s.Active = (a.expires.IsZero() || now.Before(a.expires)) && (a.Count == 0 || a.left.Load() > 0)
	return s
}

// pick returns the first active fault of kind that aims at client and
// topic and wins its draw, and records the injection (detail says what was
// done); nil if none. topic "" skips Topic matching (a fault with a Topic
// then does not match); asFilter matches the fault's filter against a
// SUBSCRIBE's filter. more, if set, must accept the fault too.
func (b *Broker) pick(set *faultSet, kind, packet, client, topic string, asFilter bool, more func(*activeFault) bool, detail string) *activeFault {
	if !set.has(kind) {
		return nil
	}
	now := b.now()
	for _, a := range set.list {
		if a.Kind != kind || a.Packet != packet || !a.aims(client, topic, asFilter) {
			continue
		}
		if !a.expires.IsZero() && !now.Before(a.expires) {
			continue
		}
		if more != nil && !more(a) {
			continue
		}
		if a.Probability > 0 && a.Probability < 1 && rand.Float64() >= a.Probability {
			continue
		}
		if a.Count > 0 && a.left.Add(-1) < 0 {
			continue
		}
		b.injected(a, client, topic, detail)
		return a
	}
	return nil
}

func (a *activeFault) aims(client, topic string, asFilter bool) bool {
	if a.Client != "" && !globMatch(a.Client, client) {
		return false
	}
	if a.Topic == "" {
		return true
	}
	if topic == "" {
		return false
	}
	if asFilter {
		return a.Topic == topic || Match(innerFilter(a.Topic), topic)
	}
	return Match(innerFilter(a.Topic), topic)
}

// injected counts and logs one injection.
func (b *Broker) injected(a *activeFault, client, topic, detail string) {
	a.injected.Add(1)
	ev := FaultEvent{Time: b.now(), Fault: a.ID, Kind: a.Kind, Client: client, Topic: topic, Detail: detail}
	fs := &b.faults
	fs.mu.Lock()
	fs.injected++
	if len(fs.events) < MaxFaultEvents {
		fs.events = append(fs.events, ev)
	} else {
		fs.events[fs.head] = ev
		fs.head = (fs.head + 1) % MaxFaultEvents
	}
	fs.mu.Unlock()
	b.log.Info("fault injected", "fault", a.ID, "kind", a.Kind, "client", client, "topic", topic, "detail", detail)
}

// globMatch matches s against pattern, where '*' matches any run of
// characters (also none) and every other character itself. It does not
// allocate: it runs on every write while a fault is active.
func globMatch(pattern, s string) bool {
	first, rest, star := strings.Cut(pattern, "*")
	if !star {
		return pattern == s
	}
	if !strings.HasPrefix(s, first) {
		return false
	}
	s = s[len(first):]
	for {
		part, more, ok := strings.Cut(rest, "*")
		if !ok { // the last part must end s
			return len(s) >= len(part) && strings.HasSuffix(s, part)
		}
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s, rest = s[i+len(part):], more
	}
}

// ParseFaults reads a fault file: {"faults": [Fault, ...]}. Errors name the
// entry ("faults[2] (id \"x\")") and what is wrong with it; every entry is
// checked.
func ParseFaults(data []byte) ([]Fault, error) {
	var doc struct {
		Faults []json.RawMessage `json:"faults"`
	}
	d := json.NewDecoder(strings.NewReader(string(data)))
	d.DisallowUnknownFields()
	if err := d.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: not a {\"faults\": [...]} document: %v", ErrInvalidFault, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: data after the document", ErrInvalidFault)
	}
	var out []Fault
	var errs []error
	ids := map[string]int{}
	for i, raw := range doc.Faults {
		var f Fault
		fd := json.NewDecoder(strings.NewReader(string(raw)))
		fd.DisallowUnknownFields()
		name := fmt.Sprintf("faults[%d]", i)
		if err := fd.Decode(&f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if f.ID != "" {
			name += fmt.Sprintf(" (id %q)", f.ID)
			if j, dup := ids[f.ID]; dup {
				errs = append(errs, fmt.Errorf("%s: %w: id also used by faults[%d]", name, ErrInvalidFault, j))
				continue
			}
			ids[f.ID] = i
		}
		if err := f.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		out = append(out, f)
	}
	if err := errors.Join(errs...); err != nil {
		if !errors.Is(err, ErrInvalidFault) {
			err = fmt.Errorf("%w: %w", ErrInvalidFault, err)
		}
		return nil, err
	}
	return out, nil
}
