package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/iotagent/iotagent/cloud/store"
)

// Buckets of the store.DB. Tombstones keep the version of a deleted shadow
// so that a re-creation within tombstoneTTL continues its numbering (§7).
const (
	bucketShadows    = "shadows"
	bucketTombstones = "shadow_tombstones"
	tombstoneTTL     = 48 * time.Hour
	maxClientToken   = 64
)

// Error messages of spec §8, verbatim.
const (
	MsgInvalidJSON       = "Invalid JSON"
	MsgMissingState      = "Missing required node: state"
	MsgStateNotObject    = "State node must be an object"
	MsgDesiredNotObject  = "Desired node must be an object"
	MsgReportedNotObject = "Reported node must be an object"
	MsgInvalidVersion    = "Invalid version"
	MsgInvalidToken      = "Invalid clientToken"
	MsgTooDeep           = "JSON contains too many levels of nesting; maximum is 6"
	MsgInvalidNode       = "State contains an invalid node"
	MsgVersionConflict   = "Version conflict"
	MsgTooLarge          = "The payload exceeds the maximum size allowed"
	MsgUnsupportedEnc    = "Unsupported documented encoding; supported encoding is UTF-8"
	MsgInternal          = "Internal service failure"
	// Not in §8: the REST API's validation of the URI labels.
	MsgInvalidThingName  = "Invalid thing name"
	MsgInvalidShadowName = "Invalid shadow name"
)

// Limits are the document limits of spec §9.
type Limits struct {
	MaxStateBytes int // bytes of desired + reported after merge, metadata excluded; default 8192
	MaxDepth      int // key levels below desired/reported; default 6
}

// DefaultLimits returns AWS's limits: 8 KB and 6 levels.
func DefaultLimits() Limits { return Limits{MaxStateBytes: 8192, MaxDepth: 6} }

// Publisher sends a message to every subscriber of topic (the broker's inline
// publish, QoS 0 or 1 is the broker's business).
type Publisher func(topic string, payload []byte)

// Service is the Device Shadow service. It is safe for concurrent use; one
// mutex serialises all operations.
type Service struct {
	db  *store.DB
	pub Publisher
	now func() time.Time

	mu     sync.Mutex
	limits Limits
}

// New returns a Service keeping its documents in db, bucket "shadows" (key:
// thing + "/" + shadow name, "" for the classic shadow), publishing delta,
// documents and MQTT responses through pub (nil publishes nothing), with now
// as its clock (nil means time.Now).
func New(db *store.DB, pub Publisher, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	if pub == nil {
		pub = func(string, []byte) {}
	}
	return &Service{db: db, pub: pub, now: now, limits: DefaultLimits()}
}

// SetLimits replaces the limits; a field <= 0 takes its default.
func (s *Service) SetLimits(l Limits) {
	d := DefaultLimits()
	if l.MaxStateBytes <= 0 {
		l.MaxStateBytes = d.MaxStateBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	s.mu.Lock()
	s.limits = l
	s.mu.Unlock()
}

// section pair used both for the stored document and its metadata.
type sections struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// storedDoc is the persisted form of one shadow.
type storedDoc struct {
	State    sections `json:"state"`
	Metadata sections `json:"metadata"`
	Version  int64    `json:"version"`
}

type tombstone struct {
	Version int64 `json:"version"`
	Deleted int64 `json:"deleted"` // Unix seconds
}

// snapshot is one side of an update/documents message.
type snapshot struct {
	State    sections `json:"state"`
	Metadata sections `json:"metadata"`
	Version  int64    `json:"version"`
}

type getState struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
	Delta    map[string]any `json:"delta,omitempty"`
}

type getDoc struct {
	State       getState `json:"state"`
	Metadata    sections `json:"metadata"`
	Version     int64    `json:"version"`
	Timestamp   int64    `json:"timestamp"`
	ClientToken string   `json:"clientToken,omitempty"`
}

type acceptedDoc struct {
	State       any    `json:"state"`
	Metadata    any    `json:"metadata"`
	Version     int64  `json:"version"`
	Timestamp   int64  `json:"timestamp"`
	ClientToken string `json:"clientToken,omitempty"`
}

type deltaDoc struct {
	Version     int64          `json:"version"`
	Timestamp   int64          `json:"timestamp"`
	State       map[string]any `json:"state"`
	Metadata    map[string]any `json:"metadata"`
	ClientToken string         `json:"clientToken,omitempty"`
}

type documentsDoc struct {
	Previous    *snapshot `json:"previous"`
	Current     snapshot  `json:"current"`
	Timestamp   int64     `json:"timestamp"`
	ClientToken string    `json:"clientToken,omitempty"`
}

type deleteDoc struct {
	Version     int64  `json:"version"`
	Timestamp   int64  `json:"timestamp"`
	ClientToken string `json:"clientToken,omitempty"`
}

// message is a publish produced by an operation.
type message struct {
	topic   string
	payload []byte
}

func key(thing, name string) string { return thing + "/" + name }

func notFound(thing, name string) string {
	n := name
	if n == "" {
		n = thing
	}
	return "No shadow exists with name: '" + n + "'"
}

// request is the parsed common part of a payload.
type request struct {
	ts    int64
	token string // readable clientToken, echoed; "" if none
	obj   map[string]any
}

func (r *request) fail(code int, msg string) *Error {
	return &Error{Code: code, Message: msg, Timestamp: r.ts, ClientToken: r.token}
}

// decodeJSON parses one JSON value with exact numbers; trailing data is an error.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after JSON value")
	}
	return v, nil
}

// readToken returns the echoable clientToken of obj and whether obj carries
// a clientToken that is invalid (not a string, or longer than 64 bytes).
func readToken(obj map[string]any) (tok string, invalid bool) {
	raw, ok := obj["clientToken"]
	if !ok {
		return "", false
	}
	t, ok := raw.(string)
	if !ok || len(t) > maxClientToken {
		return "", true
	}
	return t, false
}

func checkNames(r *request, thing, name string) *Error {
	if !validThingName(thing) {
		return r.fail(400, MsgInvalidThingName)
	}
	if name != "" && !validShadowName(name) {
		return r.fail(400, MsgInvalidShadowName)
	}
	return nil
}

// parseLenient reads a get or delete payload: anything is accepted, only a
// readable clientToken is used.
func (s *Service) parseLenient(thing, name string, payload []byte) (*request, *Error) {
	r := &request{ts: s.now().Unix()}
	if e := checkNames(r, thing, name); e != nil {
		return r, e
	}
	if !utf8.Valid(payload) {
		return r, r.fail(415, MsgUnsupportedEnc)
	}
	if v, err := decodeJSON(payload); err == nil {
		if obj, ok := v.(map[string]any); ok {
			tok, invalid := readToken(obj)
			r.token = tok
			if invalid {
				return r, r.fail(400, MsgInvalidToken)
			}
		}
	}
	return r, nil
}

// loadDoc reads the stored document of k through get; nil if none.
func loadDoc(get func(bucket, key string) ([]byte, error), k string) (*storedDoc, error) {
	b, err := get(bucketShadows, k)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load shadow %s: %w", k, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var d storedDoc
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decode shadow %s: %w", k, err)
	}
	return &d, nil
}

func loadTombstone(tx *store.Tx, k string) (*tombstone, error) {
	b, err := tx.Get(bucketTombstones, k)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load tombstone %s: %w", k, err)
	}
	var t tombstone
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("decode tombstone %s: %w", k, err)
	}
	return &t, nil
}

// Update applies an update request (spec §3.1) to shadow name ("" = classic)
// of thing and returns the update/accepted document. It publishes
// update/delta (when the full delta is non-empty) and update/documents
// through the Publisher; accepted/rejected are the caller's business.
func (s *Service) Update(thing, name string, payload []byte) ([]byte, error) {
	acc, msgs, e := s.update(thing, name, payload)
	if e != nil {
		return nil, e
	}
	s.publish(msgs)
	return acc, nil
}

func (s *Service) publish(msgs []message) {
	for _, m := range msgs {
		s.pub(m.topic, m.payload)
	}
}

// validateUpdate runs the request checks of §10 in order, up to version.
// It returns the state value (nil for "state": null) and the version (-1 if
// absent).
func (s *Service) validateUpdate(r *request, payload []byte, lim Limits) (state map[string]any, version int64, e *Error) {
	if !utf8.Valid(payload) {
		return nil, 0, r.fail(415, MsgUnsupportedEnc)
	}
	v, err := decodeJSON(payload)
	if err != nil {
		return nil, 0, r.fail(400, MsgInvalidJSON)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, 0, r.fail(400, MsgInvalidJSON)
	}
	r.obj = obj
	tok, badToken := readToken(obj)
	r.token = tok

	rawState, ok := obj["state"]
	if !ok {
		return nil, 0, r.fail(400, MsgMissingState)
	}
	if rawState != nil {
		st, ok := rawState.(map[string]any)
		if !ok {
			return nil, 0, r.fail(400, MsgStateNotObject)
		}
		if d, ok := st["desired"]; ok && d != nil {
			if _, ok := d.(map[string]any); !ok {
				return nil, 0, r.fail(400, MsgDesiredNotObject)
			}
		}
		if d, ok := st["reported"]; ok && d != nil {
			if _, ok := d.(map[string]any); !ok {
				return nil, 0, r.fail(400, MsgReportedNotObject)
			}
		}
		if hasArrayWithNull(st["desired"]) || hasArrayWithNull(st["reported"]) {
			return nil, 0, r.fail(400, MsgInvalidJSON)
		}
		for k := range st {
			if k != "desired" && k != "reported" {
				return nil, 0, r.fail(400, MsgInvalidNode)
			}
		}
		for _, sec := range []string{"desired", "reported"} {
			if depth(st[sec]) > lim.MaxDepth {
				return nil, 0, r.fail(400, MsgTooDeep)
			}
		}
		state = st
	}
	if badToken {
		return nil, 0, r.fail(400, MsgInvalidToken)
	}
	version = -1
	if rv, ok := obj["version"]; ok && rv != nil {
		n, ok := rv.(json.Number)
		if !ok {
			return nil, 0, r.fail(400, MsgInvalidVersion)
		}
		version, err = strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return nil, 0, r.fail(400, MsgInvalidVersion)
		}
	}
	return state, version, nil
}

func (s *Service) update(thing, name string, payload []byte) (accepted []byte, msgs []message, rerr *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &request{ts: s.now().Unix()}
	if e := checkNames(r, thing, name); e != nil {
		return nil, nil, e
	}
	state, reqVersion, e := s.validateUpdate(r, payload, s.limits)
	if e != nil {
		return nil, nil, e
	}
	k := key(thing, name)
	var out []byte
	err := s.db.Update(func(tx *store.Tx) error {
		prev, err := loadDoc(tx.Get, k)
		if err != nil {
			return err
		}
		// Version lock (§7): an existing shadow must match; a new one accepts only 1.
		if reqVersion >= 0 {
			want := int64(1)
			if prev != nil {
				want = prev.Version
			}
			if reqVersion != want {
				rerr = r.fail(409, MsgVersionConflict)
				return nil
			}
		}
		var cur storedDoc
		if prev != nil {
			cur = *prev
		}
		if state == nil {
			cur.State, cur.Metadata = sections{}, sections{}
		} else {
			if p, ok := state["desired"]; ok {
				cur.State.Desired, cur.Metadata.Desired = applySection(cur.State.Desired, cur.Metadata.Desired, p, r.ts)
			}
			if p, ok := state["reported"]; ok {
				cur.State.Reported, cur.Metadata.Reported = applySection(cur.State.Reported, cur.Metadata.Reported, p, r.ts)
			}
		}
		ds, err := sectionSize(cur.State.Desired)
		if err != nil {
			return err
		}
		rs, err := sectionSize(cur.State.Reported)
		if err != nil {
			return err
		}
		if ds+rs > s.limits.MaxStateBytes {
			rerr = r.fail(413, MsgTooLarge)
			return nil
		}
		if prev != nil {
			cur.Version = prev.Version + 1
		} else {
			cur.Version = 1
			tomb, err := loadTombstone(tx, k)
			if err != nil {
				return err
			}
			if tomb != nil && r.ts-tomb.Deleted < int64(tombstoneTTL/time.Second) {
				cur.Version = tomb.Version + 1
			}
			if err := tx.Delete(bucketTombstones, k); err != nil {
				return fmt.Errorf("delete tombstone %s: %w", k, err)
			}
		}
		b, err := marshal(cur)
		if err != nil {
			return fmt.Errorf("encode shadow %s: %w", k, err)
		}
		if err := tx.Put(bucketShadows, k, b); err != nil {
			return fmt.Errorf("store shadow %s: %w", k, err)
		}
		out, msgs, err = s.updateOutputs(thing, name, r, state, prev, &cur)
		return err
	})
	if err != nil {
		return nil, nil, r.fail(500, MsgInternal)
	}
	if rerr != nil {
		return nil, nil, rerr
	}
	return out, msgs, nil
}

// applySection merges patch p (null or an object, already validated) into
// one section and its metadata.
func applySection(val, meta map[string]any, p any, ts int64) (map[string]any, map[string]any) {
	po, ok := p.(map[string]any)
	if !ok { // null: delete the whole section
		return nil, nil
	}
	return mergeSection(val, meta, po, ts, true)
}

// updateOutputs builds update/accepted, update/delta and update/documents.
func (s *Service) updateOutputs(thing, name string, r *request, state map[string]any, prev, cur *storedDoc) ([]byte, []message, error) {
	acc := acceptedDoc{Version: cur.Version, Timestamp: r.ts, ClientToken: r.token}
	if state == nil {
		acc.Metadata = leafMeta(r.ts)
	} else {
		acc.State = state
		meta := make(map[string]any, len(state))
		for sec, v := range state {
			meta[sec] = metaOf(v, r.ts)
		}
		acc.Metadata = meta
	}
	accepted, err := marshal(acc)
	if err != nil {
		return nil, nil, fmt.Errorf("encode update/accepted: %w", err)
	}
	p := Prefix(thing, name)
	var msgs []message
	if delta := Delta(cur.State.Desired, cur.State.Reported); len(delta) > 0 {
		b, err := marshal(deltaDoc{
			Version: cur.Version, Timestamp: r.ts, State: delta,
			Metadata: deltaMeta(delta, cur.Metadata.Desired), ClientToken: r.token,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("encode update/delta: %w", err)
		}
		msgs = append(msgs, message{p + "/update/delta", b})
	}
	docs := documentsDoc{
		Current:   snapshot{State: cur.State, Metadata: cur.Metadata, Version: cur.Version},
		Timestamp: r.ts, ClientToken: r.token,
	}
	if prev != nil {
		docs.Previous = &snapshot{State: prev.State, Metadata: prev.Metadata, Version: prev.Version}
	}
	b, err := marshal(docs)
	if err != nil {
		return nil, nil, fmt.Errorf("encode update/documents: %w", err)
	}
	msgs = append(msgs, message{p + "/update/documents", b})
	return accepted, msgs, nil
}

// Get returns the get/accepted document of shadow name ("" = classic) of
// thing: full state with delta when non-empty, metadata, version, timestamp
// and the request's clientToken. The payload is ignored except for its
// clientToken.
func (s *Service) Get(thing, name string, payload []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, e := s.parseLenient(thing, name, payload)
	if e != nil {
		return nil, e
	}
	d, err := loadDoc(s.db.Get, key(thing, name))
	if err != nil {
		return nil, r.fail(500, MsgInternal)
	}
	if d == nil {
		return nil, r.fail(404, notFound(thing, name))
	}
	g := getDoc{
		State:    getState{Desired: d.State.Desired, Reported: d.State.Reported},
		Metadata: d.Metadata, Version: d.Version, Timestamp: r.ts, ClientToken: r.token,
	}
	if delta := Delta(d.State.Desired, d.State.Reported); len(delta) > 0 {
		g.State.Delta = delta
	}
	b, err := marshal(g)
	if err != nil {
		return nil, r.fail(500, MsgInternal)
	}
	return b, nil
}

// Delete deletes shadow name ("" = classic) of thing and returns the
// delete/accepted document carrying the version it had. A re-creation within
// 48 hours continues its version numbering.
func (s *Service) Delete(thing, name string, payload []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, e := s.parseLenient(thing, name, payload)
	if e != nil {
		return nil, e
	}
	k := key(thing, name)
	var out []byte
	var rerr *Error
	err := s.db.Update(func(tx *store.Tx) error {
		d, err := loadDoc(tx.Get, k)
		if err != nil {
			return err
		}
		if d == nil {
			rerr = r.fail(404, notFound(thing, name))
			return nil
		}
		tb, err := json.Marshal(tombstone{Version: d.Version, Deleted: r.ts})
		if err != nil {
			return fmt.Errorf("encode tombstone %s: %w", k, err)
		}
		if err := tx.Put(bucketTombstones, k, tb); err != nil {
			return fmt.Errorf("store tombstone %s: %w", k, err)
		}
		if err := tx.Delete(bucketShadows, k); err != nil {
			return fmt.Errorf("delete shadow %s: %w", k, err)
		}
		out, err = marshal(deleteDoc{Version: d.Version, Timestamp: r.ts, ClientToken: r.token})
		return err
	})
	if err != nil {
		return nil, r.fail(500, MsgInternal)
	}
	if rerr != nil {
		return nil, rerr
	}
	return out, nil
}

// ListNamed returns the names of the named shadows of thing, sorted. An
// unknown thing has none.
func (s *Service) ListNamed(thing string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &request{ts: s.now().Unix()}
	if !validThingName(thing) {
		return nil, r.fail(400, MsgInvalidThingName)
	}
	names := []string{}
	prefix := thing + "/"
	err := s.db.ForEach(bucketShadows, prefix, func(k string, _ []byte) error {
		if n := strings.TrimPrefix(k, prefix); n != "" {
			names = append(names, n)
		}
		return nil
	})
	if err != nil {
		return nil, r.fail(500, MsgInternal)
	}
	sort.Strings(names)
	return names, nil
}

// HandleRequest performs a shadow request published by a device on
// $aws/things/T/shadow[/name/S]/{update,get,delete} and publishes the result
// to .../accepted or .../rejected (then, for an accepted update, delta and
// documents). It returns false, doing nothing, for any other topic.
func (s *Service) HandleRequest(topic string, payload []byte) bool {
	thing, name, op, ok := ParseTopic(topic)
	if !ok {
		return false
	}
	var (
		res  []byte
		msgs []message
		e    *Error
	)
	switch op {
	case "update":
		res, msgs, e = s.update(thing, name, payload)
	case "get":
		var err error
		res, err = s.Get(thing, name, payload)
		e = asError(err)
	case "delete":
		var err error
		res, err = s.Delete(thing, name, payload)
		e = asError(err)
	default:
		return false
	}
	p := Prefix(thing, name) + "/" + op
	if e != nil {
		s.pub(p+"/rejected", e.Document())
		return true
	}
	s.pub(p+"/accepted", res)
	s.publish(msgs)
	return true
}

func asError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: 500, Message: MsgInternal}
}
