package shadow

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/iotagent/iotagent/cloud/store"
)

// t0 is the test clock's start: 1719855498 s.
var t0 = time.Unix(1719855498, 0)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
func (c *fakeClock) Unix() int64 { return c.Now().Unix() }

type pubMsg struct {
	Topic   string
	Payload string
}

// recorder is a fake Publisher that keeps every message.
type recorder struct {
	mu   sync.Mutex
	msgs []pubMsg
}

func (r *recorder) Publish(topic string, payload []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, pubMsg{topic, string(payload)})
	r.mu.Unlock()
}

// Take returns and forgets the recorded messages.
func (r *recorder) Take() []pubMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs
	r.msgs = nil
	return m
}

type fixture struct {
	svc   *Service
	db    *store.DB
	path  string
	rec   *recorder
	clock *fakeClock
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{path: filepath.Join(t.TempDir(), "sim.db"), rec: &recorder{}, clock: &fakeClock{t: t0}}
	f.open(t)
	t.Cleanup(func() { f.db.Close() })
	return f
}

func (f *fixture) open(t testing.TB) {
	t.Helper()
	db, err := store.Open(f.path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.db = db
	f.svc = New(db, f.rec.Publish, f.clock.Now)
}

func (f *fixture) reopen(t *testing.T) {
	t.Helper()
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}
	f.open(t)
}

func (f *fixture) mustUpdate(t testing.TB, thing, name, payload string) string {
	t.Helper()
	b, err := f.svc.Update(thing, name, []byte(payload))
	if err != nil {
		t.Fatalf("Update(%s) = %v", payload, err)
	}
	return string(b)
}

func (f *fixture) mustGet(t *testing.T, thing, name, payload string) string {
	t.Helper()
	b, err := f.svc.Get(thing, name, []byte(payload))
	if err != nil {
		t.Fatalf("Get = %v", err)
	}
	return string(b)
}

// jsonDiff compares two JSON texts as values.
func jsonDiff(t testing.TB, want, got string) string {
	t.Helper()
	g, err := decodeJSON([]byte(got))
	if err != nil {
		return fmt.Sprintf("got invalid JSON %q: %v", got, err)
	}
	return cmp.Diff(js(t, want), g)
}

// errOf checks that err is an *Error and returns it.
func errOf(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e
}

func TestUpdateAcceptedEchoesRequest(t *testing.T) {
	f := newFixture(t)
	f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"Status":"ok","Other":1}}}`)
	f.clock.Advance(10 * time.Second)
	got := f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"Color":"red","Status":null,"rgb":[1,2],"o":{"x":1}}},"clientToken":"1317558e","thingName":"dev1"}`)
	ts := f.clock.Unix()
	want := fmt.Sprintf(`{
		"state":{"reported":{"Color":"red","Status":null,"rgb":[1,2],"o":{"x":1}}},
		"metadata":{"reported":{"Color":{"timestamp":%[1]d},"Status":{"timestamp":%[1]d},
			"rgb":[{"timestamp":%[1]d},{"timestamp":%[1]d}],"o":{"x":{"timestamp":%[1]d}}}},
		"version":2,"timestamp":%[1]d,"clientToken":"1317558e"}`, ts)
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("update/accepted (-want +got):\n%s", diff)
	}
	// Null section echoed with a timestamp; no clientToken when none given.
	got = f.mustUpdate(t, "dev1", "", `{"state":{"desired":null}}`)
	want = fmt.Sprintf(`{"state":{"desired":null},"metadata":{"desired":{"timestamp":%[1]d}},"version":3,"timestamp":%[1]d}`, ts)
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("update/accepted with null section (-want +got):\n%s", diff)
	}
}

func TestGetDocument(t *testing.T) {
	f := newFixture(t)
	t1 := f.clock.Unix()
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":{"Color":"red","Status":"Great"},"reported":{"Color":"red","Status":"Awful"}}}`)
	f.clock.Advance(5 * time.Second)
	t2 := f.clock.Unix()
	f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"Status":"Bad"}}}`)
	f.clock.Advance(5 * time.Second)
	got := f.mustGet(t, "dev1", "", `{"clientToken":"e6e3"}`)
	want := fmt.Sprintf(`{
		"state":{"desired":{"Color":"red","Status":"Great"},"reported":{"Color":"red","Status":"Bad"},"delta":{"Status":"Great"}},
		"metadata":{"desired":{"Color":{"timestamp":%[1]d},"Status":{"timestamp":%[1]d}},
			"reported":{"Color":{"timestamp":%[1]d},"Status":{"timestamp":%[2]d}}},
		"version":2,"timestamp":%[3]d,"clientToken":"e6e3"}`, t1, t2, f.clock.Unix())
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("get/accepted (-want +got):\n%s", diff)
	}

	// In sync: no delta key; absent section omitted.
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":null,"reported":{"Status":null}}}`)
	got = f.mustGet(t, "dev1", "", ``)
	want = fmt.Sprintf(`{"state":{"reported":{"Color":"red"}},"metadata":{"reported":{"Color":{"timestamp":%d}}},"version":3,"timestamp":%d}`, t1, f.clock.Unix())
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("get/accepted in sync (-want +got):\n%s", diff)
	}
}

func TestSectionRemovedWhenEmpty(t *testing.T) {
	f := newFixture(t)
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":{"a":1},"reported":{"b":{"c":1}}}}`)
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":{"a":null},"reported":{"b":{"c":null}}}}`)
	got := f.mustGet(t, "dev1", "", ``)
	want := fmt.Sprintf(`{"state":{"reported":{"b":{}}},"metadata":{"reported":{"b":{}}},"version":2,"timestamp":%d}`, f.clock.Unix())
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("get (-want +got):\n%s", diff)
	}
}

func TestStateNull(t *testing.T) {
	f := newFixture(t)
	ts := f.clock.Unix()
	// On a missing shadow: created at version 1, empty.
	got := f.mustUpdate(t, "dev1", "", `{"state":null,"clientToken":"t1"}`)
	want := fmt.Sprintf(`{"state":null,"metadata":{"timestamp":%[1]d},"version":1,"timestamp":%[1]d,"clientToken":"t1"}`, ts)
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("accepted on missing shadow (-want +got):\n%s", diff)
	}
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":{"a":1},"reported":{"a":2}}}`)
	got = f.mustUpdate(t, "dev1", "", `{"state":null}`)
	want = fmt.Sprintf(`{"state":null,"metadata":{"timestamp":%[1]d},"version":3,"timestamp":%[1]d}`, ts)
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("accepted on existing shadow (-want +got):\n%s", diff)
	}
	got = f.mustGet(t, "dev1", "", ``)
	want = fmt.Sprintf(`{"state":{},"metadata":{},"version":3,"timestamp":%d}`, ts)
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("get after state null (-want +got):\n%s", diff)
	}
}

func TestNoOpUpdatesIncrementVersion(t *testing.T) {
	f := newFixture(t)
	for i, p := range []string{`{"state":{}}`, `{"state":{"desired":{}}}`, `{"state":{"reported":{"gone":null}}}`} {
		got := f.mustUpdate(t, "dev1", "", p)
		if diff := cmp.Diff(jsonNum(fmt.Sprint(i+1)), js(t, got).(map[string]any)["version"]); diff != "" {
			t.Errorf("%s: version (-want +got):\n%s", p, diff)
		}
	}
	got := f.mustGet(t, "dev1", "", ``)
	if diff := jsonDiff(t, fmt.Sprintf(`{"state":{},"metadata":{},"version":3,"timestamp":%d}`, f.clock.Unix()), got); diff != "" {
		t.Errorf("get (-want +got):\n%s", diff)
	}
}

func TestUnknownTopLevelFieldsIgnored(t *testing.T) {
	f := newFixture(t)
	got := f.mustUpdate(t, "dev1", "s1", `{"state":{"reported":{"a":1}},"thingName":"dev1","shadowName":"s1","x":{"y":[null]}}`)
	ts := f.clock.Unix()
	want := fmt.Sprintf(`{"state":{"reported":{"a":1}},"metadata":{"reported":{"a":{"timestamp":%[1]d}}},"version":1,"timestamp":%[1]d}`, ts)
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("accepted (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	const tok = `"clientToken":"tok-1"`
	long := strings.Repeat("x", 65)
	deep7 := `{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}`
	big := strings.Repeat("x", 8200)
	tests := []struct {
		name      string
		op        string // update (default), get, delete
		shadow    string
		thing     string
		setup     string // update applied first, if any
		payload   string
		code      int
		msg       string
		wantToken string
	}{
		{name: "not JSON has no token", payload: `{"state":`, code: 400, msg: "Invalid JSON"},
		{name: "trailing garbage", payload: `{"state":{}} x`, code: 400, msg: "Invalid JSON"},
		{name: "JSON array payload", payload: `[1]`, code: 400, msg: "Invalid JSON"},
		{name: "array containing null", payload: `{"state":{"reported":{"l":[1,null]}},` + tok + `}`, code: 400, msg: "Invalid JSON", wantToken: "tok-1"},
		{name: "missing state", payload: `{` + tok + `}`, code: 400, msg: "Missing required node: state", wantToken: "tok-1"},
		{name: "state is a string", payload: `{"state":"x",` + tok + `}`, code: 400, msg: "State node must be an object", wantToken: "tok-1"},
		{name: "state is a number", payload: `{"state":1}`, code: 400, msg: "State node must be an object"},
		{name: "state is an array", payload: `{"state":[]}`, code: 400, msg: "State node must be an object"},
		{name: "desired not object", payload: `{"state":{"desired":[1]},` + tok + `}`, code: 400, msg: "Desired node must be an object", wantToken: "tok-1"},
		{name: "reported not object", payload: `{"state":{"reported":"x"}}`, code: 400, msg: "Reported node must be an object"},
		{name: "invalid node in state", payload: `{"state":{"delta":{"a":1}},` + tok + `}`, code: 400, msg: "State contains an invalid node", wantToken: "tok-1"},
		{name: "too deep", payload: `{"state":{"desired":` + deep7 + `},` + tok + `}`, code: 400, msg: "JSON contains too many levels of nesting; maximum is 6", wantToken: "tok-1"},
		{name: "clientToken too long not echoed", payload: `{"state":{},"clientToken":"` + long + `"}`, code: 400, msg: "Invalid clientToken"},
		{name: "clientToken not a string", payload: `{"state":{},"clientToken":5}`, code: 400, msg: "Invalid clientToken"},
		{name: "version is a string", payload: `{"state":{},"version":"1",` + tok + `}`, code: 400, msg: "Invalid version", wantToken: "tok-1"},
		{name: "version is fractional", payload: `{"state":{},"version":1.5}`, code: 400, msg: "Invalid version"},
		{name: "version is 1.0", payload: `{"state":{},"version":1.0}`, code: 400, msg: "Invalid version"},
		{name: "version mismatch", setup: `{"state":{}}`, payload: `{"state":{"reported":{"a":1}},"version":5,` + tok + `}`, code: 409, msg: "Version conflict", wantToken: "tok-1"},
		{name: "version on missing shadow other than 1", payload: `{"state":{},"version":2}`, code: 409, msg: "Version conflict"},
		{name: "too large", payload: `{"state":{"reported":{"a":"` + big + `"}},` + tok + `}`, code: 413, msg: "The payload exceeds the maximum size allowed", wantToken: "tok-1"},
		{name: "not UTF-8", payload: "{\"state\":{\"reported\":{\"a\":\"\xff\"}}}", code: 415, msg: "Unsupported documented encoding; supported encoding is UTF-8"},
		{name: "bad thing name", thing: "a/b", payload: `{"state":{}}`, code: 400, msg: "Invalid thing name"},
		{name: "thing name too long", thing: strings.Repeat("t", 129), payload: `{"state":{}}`, code: 400, msg: "Invalid thing name"},
		{name: "bad shadow name", shadow: "a b", payload: `{"state":{}}`, code: 400, msg: "Invalid shadow name"},
		{name: "shadow name too long", shadow: strings.Repeat("s", 65), payload: `{"state":{}}`, code: 400, msg: "Invalid shadow name"},
		{name: "get missing classic names thing", op: "get", payload: `{` + tok + `}`, code: 404, msg: "No shadow exists with name: 'dev1'", wantToken: "tok-1"},
		{name: "get missing named names shadow", op: "get", shadow: "simShadow1", payload: ``, code: 404, msg: "No shadow exists with name: 'simShadow1'"},
		{name: "delete missing classic", op: "delete", payload: `{` + tok + `}`, code: 404, msg: "No shadow exists with name: 'dev1'", wantToken: "tok-1"},
		{name: "delete missing named", op: "delete", shadow: "s1", payload: `nonsense`, code: 404, msg: "No shadow exists with name: 's1'"},
		{name: "get token too long", op: "get", setup: `{"state":{}}`, payload: `{"clientToken":"` + long + `"}`, code: 400, msg: "Invalid clientToken"},
		{name: "get not UTF-8", op: "get", setup: `{"state":{}}`, payload: "\xfe", code: 415, msg: "Unsupported documented encoding; supported encoding is UTF-8"},
		// Check order of §10.
		{name: "order: state type before section types", payload: `{"state":"x","version":"bad"}`, code: 400, msg: "State node must be an object"},
		{name: "order: section types before invalid node", payload: `{"state":{"foo":1,"desired":5}}`, code: 400, msg: "Desired node must be an object"},
		{name: "order: invalid node before depth", payload: `{"state":{"foo":1,"desired":` + deep7 + `}}`, code: 400, msg: "State contains an invalid node"},
		{name: "order: depth before clientToken", payload: `{"state":{"desired":` + deep7 + `},"clientToken":"` + long + `"}`, code: 400, msg: "JSON contains too many levels of nesting; maximum is 6"},
		{name: "order: clientToken before version", payload: `{"state":{},"clientToken":"` + long + `","version":"x"}`, code: 400, msg: "Invalid clientToken"},
		{name: "order: version before size", payload: `{"state":{"reported":{"a":"` + big + `"}},"version":"x"}`, code: 400, msg: "Invalid version"},
		{name: "order: conflict before size", setup: `{"state":{}}`, payload: `{"state":{"reported":{"a":"` + big + `"}},"version":7}`, code: 409, msg: "Version conflict"},
		{name: "order: encoding before JSON", payload: "\xff{", code: 415, msg: "Unsupported documented encoding; supported encoding is UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			thing := tc.thing
			if thing == "" {
				thing = "dev1"
			}
			if tc.setup != "" {
				f.mustUpdate(t, "dev1", tc.shadow, tc.setup)
			}
			before, _ := f.svc.Get("dev1", tc.shadow, nil)
			f.rec.Take()
			var err error
			var out []byte
			switch tc.op {
			case "", "update":
				out, err = f.svc.Update(thing, tc.shadow, []byte(tc.payload))
			case "get":
				out, err = f.svc.Get(thing, tc.shadow, []byte(tc.payload))
			case "delete":
				out, err = f.svc.Delete(thing, tc.shadow, []byte(tc.payload))
			}
			if err == nil {
				t.Fatalf("accepted: %s", out)
			}
			e := errOf(t, err)
			want := &Error{Code: tc.code, Message: tc.msg, Timestamp: f.clock.Unix(), ClientToken: tc.wantToken}
			if diff := cmp.Diff(want, e); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if out != nil {
				t.Errorf("output %q with an error", out)
			}
			if msgs := f.rec.Take(); len(msgs) != 0 {
				t.Errorf("rejected request published %v", msgs)
			}
			after, _ := f.svc.Get("dev1", tc.shadow, nil)
			if diff := cmp.Diff(string(before), string(after)); diff != "" {
				t.Errorf("rejected request changed the shadow (-before +after):\n%s", diff)
			}
		})
	}
}

func TestErrorDocument(t *testing.T) {
	e := &Error{Code: 409, Message: "Version conflict", Timestamp: 1719858420, ClientToken: "426b"}
	want := `{"code":409,"message":"Version conflict","timestamp":1719858420,"clientToken":"426b"}`
	if diff := jsonDiff(t, want, string(e.Document())); diff != "" {
		t.Errorf("document (-want +got):\n%s", diff)
	}
	if diff := jsonDiff(t, `{"code":400,"message":"Invalid JSON"}`, string((&Error{Code: 400, Message: "Invalid JSON"}).Document())); diff != "" {
		t.Errorf("document without token (-want +got):\n%s", diff)
	}
}

func TestClientTokenLimit(t *testing.T) {
	f := newFixture(t)
	tok64 := strings.Repeat("k", 64)
	got := f.mustUpdate(t, "dev1", "", `{"state":{},"clientToken":"`+tok64+`"}`)
	if js(t, got).(map[string]any)["clientToken"] != tok64 {
		t.Errorf("64-byte token not echoed: %s", got)
	}
	// 64 bytes of multi-byte characters (32 × 2 bytes) are fine; 33 are not.
	if _, err := f.svc.Update("dev1", "", []byte(`{"state":{},"clientToken":"`+strings.Repeat("é", 32)+`"}`)); err != nil {
		t.Errorf("64-byte UTF-8 token rejected: %v", err)
	}
	_, err := f.svc.Update("dev1", "", []byte(`{"state":{},"clientToken":"`+strings.Repeat("é", 33)+`"}`))
	if e := errOf(t, err); e.Message != "Invalid clientToken" {
		t.Errorf("66-byte token: %v", e)
	}
}

func TestVersions(t *testing.T) {
	f := newFixture(t)
	ver := func(doc string) any { return js(t, doc).(map[string]any)["version"] }
	// Version 1 on a missing shadow is accepted.
	if v := ver(f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"a":1}},"version":1}`)); v != jsonNum("1") {
		t.Errorf("first version = %v, want 1", v)
	}
	if v := ver(f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"a":2}}}`)); v != jsonNum("2") {
		t.Errorf("second version = %v, want 2", v)
	}
	// Matching version accepted.
	if v := ver(f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"a":3}},"version":2}`)); v != jsonNum("3") {
		t.Errorf("third version = %v, want 3", v)
	}
	// Stale version: 409, nothing applied, version unchanged.
	_, err := f.svc.Update("dev1", "", []byte(`{"state":{"reported":{"a":99}},"version":2}`))
	if e := errOf(t, err); e.Code != 409 {
		t.Errorf("stale version: %v", e)
	}
	// Gets and deletes-that-fail do not change the version.
	f.mustGet(t, "dev1", "", ``)
	if _, err := f.svc.Delete("dev1", "other", nil); err == nil {
		t.Error("delete of missing named shadow accepted")
	}
	got := f.mustGet(t, "dev1", "", ``)
	want := fmt.Sprintf(`{"state":{"reported":{"a":3}},"metadata":{"reported":{"a":{"timestamp":%[1]d}}},"version":3,"timestamp":%[1]d}`, f.clock.Unix())
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("get (-want +got):\n%s", diff)
	}
	// A null version is treated as absent.
	if v := ver(f.mustUpdate(t, "dev1", "", `{"state":{},"version":null}`)); v != jsonNum("4") {
		t.Errorf("version after null version = %v, want 4", v)
	}
	// Classic and named shadows of one thing count separately.
	if v := ver(f.mustUpdate(t, "dev1", "s1", `{"state":{}}`)); v != jsonNum("1") {
		t.Errorf("named shadow version = %v, want 1", v)
	}
}

func TestDeleteAndRecreate(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"a":1}}}`)
	}
	f.clock.Advance(time.Minute)
	got, err := f.svc.Delete("dev1", "", []byte(`{"clientToken":"d1"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"version":3,"timestamp":%d,"clientToken":"d1"}`, f.clock.Unix())
	if diff := jsonDiff(t, want, string(got)); diff != "" {
		t.Errorf("delete/accepted (-want +got):\n%s", diff)
	}
	if _, err := f.svc.Get("dev1", "", nil); errOf(t, err).Code != 404 {
		t.Errorf("get after delete: %v, want 404", err)
	}
	if _, err := f.svc.Delete("dev1", "", nil); errOf(t, err).Code != 404 {
		t.Errorf("second delete: %v, want 404", err)
	}
	// Re-created within 48 h: numbering continues; previous is null.
	f.clock.Advance(47 * time.Hour)
	f.rec.Take()
	got2 := f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"b":2}},"version":1}`)
	if v := js(t, got2).(map[string]any)["version"]; v != jsonNum("4") {
		t.Errorf("version after re-create within 48h = %v, want 4", v)
	}
	msgs := f.rec.Take()
	if len(msgs) != 1 || msgs[0].Topic != "$aws/things/dev1/shadow/update/documents" {
		t.Fatalf("published %v, want only documents", msgs)
	}
	ts := f.clock.Unix()
	wantDocs := fmt.Sprintf(`{"previous":null,"current":{"state":{"reported":{"b":2}},"metadata":{"reported":{"b":{"timestamp":%[1]d}}},"version":4},"timestamp":%[1]d}`, ts)
	if diff := jsonDiff(t, wantDocs, msgs[0].Payload); diff != "" {
		t.Errorf("documents (-want +got):\n%s", diff)
	}
	// Old content is gone.
	if diff := jsonDiff(t, fmt.Sprintf(`{"state":{"reported":{"b":2}},"metadata":{"reported":{"b":{"timestamp":%[1]d}}},"version":4,"timestamp":%[1]d}`, ts), f.mustGet(t, "dev1", "", ``)); diff != "" {
		t.Errorf("get after re-create (-want +got):\n%s", diff)
	}
	// Deleted more than 48 h ago: numbering restarts at 1.
	if _, err := f.svc.Delete("dev1", "", nil); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(48 * time.Hour)
	if v := js(t, f.mustUpdate(t, "dev1", "", `{"state":{}}`)).(map[string]any)["version"]; v != jsonNum("1") {
		t.Errorf("version after re-create past 48h = %v, want 1", v)
	}
}

func TestDeltaAndDocumentsPublished(t *testing.T) {
	f := newFixture(t)
	t1 := f.clock.Unix()
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":{"Color":"red","Status":"Great"},"reported":{"Color":"red","Status":"Great"}}}`)
	// In sync: only documents.
	msgs := f.rec.Take()
	if len(msgs) != 1 || msgs[0].Topic != "$aws/things/dev1/shadow/update/documents" {
		t.Fatalf("in-sync update published %v", msgs)
	}
	f.clock.Advance(time.Second)
	t2 := f.clock.Unix()
	// A reported-only update leaving a mismatch produces a delta with desired metadata.
	f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"Status":"Awful"}},"clientToken":"c1"}`)
	msgs = f.rec.Take()
	wantDelta := fmt.Sprintf(`{"version":2,"timestamp":%d,"state":{"Status":"Great"},"metadata":{"Status":{"timestamp":%d}},"clientToken":"c1"}`, t2, t1)
	wantDocs := fmt.Sprintf(`{
		"previous":{"state":{"desired":{"Color":"red","Status":"Great"},"reported":{"Color":"red","Status":"Great"}},
			"metadata":{"desired":{"Color":{"timestamp":%[1]d},"Status":{"timestamp":%[1]d}},"reported":{"Color":{"timestamp":%[1]d},"Status":{"timestamp":%[1]d}}},"version":1},
		"current":{"state":{"desired":{"Color":"red","Status":"Great"},"reported":{"Color":"red","Status":"Awful"}},
			"metadata":{"desired":{"Color":{"timestamp":%[1]d},"Status":{"timestamp":%[1]d}},"reported":{"Color":{"timestamp":%[1]d},"Status":{"timestamp":%[2]d}}},"version":2},
		"timestamp":%[2]d,"clientToken":"c1"}`, t1, t2)
	checkMsgs(t, msgs, []pubMsg{
		{"$aws/things/dev1/shadow/update/delta", wantDelta},
		{"$aws/things/dev1/shadow/update/documents", wantDocs},
	})
	// An unrelated update still carries the complete delta.
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":{"New":1},"reported":{"Other":true}}}`)
	msgs = f.rec.Take()
	if len(msgs) != 2 {
		t.Fatalf("published %v", msgs)
	}
	wantDelta = fmt.Sprintf(`{"version":3,"timestamp":%[2]d,"state":{"Status":"Great","New":1},"metadata":{"Status":{"timestamp":%[1]d},"New":{"timestamp":%[2]d}}}`, t1, t2)
	if diff := jsonDiff(t, wantDelta, msgs[0].Payload); diff != "" {
		t.Errorf("complete delta (-want +got):\n%s", diff)
	}
	// Get and delete never publish.
	f.mustGet(t, "dev1", "", ``)
	if _, err := f.svc.Delete("dev1", "", nil); err != nil {
		t.Fatal(err)
	}
	if msgs := f.rec.Take(); len(msgs) != 0 {
		t.Errorf("get/delete published %v", msgs)
	}
}

func checkMsgs(t *testing.T, got, want []pubMsg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("published %d messages %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].Topic != want[i].Topic {
			t.Errorf("message %d topic = %s, want %s", i, got[i].Topic, want[i].Topic)
		}
		if diff := jsonDiff(t, want[i].Payload, got[i].Payload); diff != "" {
			t.Errorf("message %d on %s (-want +got):\n%s", i, want[i].Topic, diff)
		}
	}
}

func jsonNum(s string) any { return json.Number(s) }

func TestMetadataTimestamps(t *testing.T) {
	f := newFixture(t)
	t1 := f.clock.Unix()
	f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"Color":"green","Status":"ok","rgb":[1,2,3],"cfg":{"a":1,"b":2}}}}`)
	f.clock.Advance(time.Hour)
	t2 := f.clock.Unix()
	f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"Status":"bad","rgb":[9],"cfg":{"b":3},"Color":null}}}`)
	got := f.mustGet(t, "dev1", "", ``)
	want := fmt.Sprintf(`{
		"state":{"reported":{"Status":"bad","rgb":[9],"cfg":{"a":1,"b":3}}},
		"metadata":{"reported":{"Status":{"timestamp":%[2]d},"rgb":[{"timestamp":%[2]d}],
			"cfg":{"a":{"timestamp":%[1]d},"b":{"timestamp":%[2]d}}}},
		"version":2,"timestamp":%[2]d}`, t1, t2)
	if diff := jsonDiff(t, want, got); diff != "" {
		t.Errorf("get (-want +got):\n%s", diff)
	}
}

func TestLimits(t *testing.T) {
	// {"a":"…"} is 8 bytes plus the string.
	reported := func(n int) string { return `{"a":"` + strings.Repeat("x", n) + `"}` }
	deep := func(levels int) string {
		return strings.Repeat(`{"k":`, levels) + "1" + strings.Repeat("}", levels)
	}
	tests := []struct {
		name    string
		limits  *Limits
		setup   string
		payload string
		code    int // 0 = accepted
	}{
		{name: "8192 bytes accepted", payload: `{"state":{"reported":` + reported(8184) + `}}`},
		{name: "8193 bytes rejected", payload: `{"state":{"reported":` + reported(8185) + `}}`, code: 413},
		{name: "desired plus reported 8192 accepted", payload: `{"state":{"desired":{"b":"1"},"reported":` + reported(8175) + `}}`},
		{name: "desired plus reported 8193 rejected", payload: `{"state":{"desired":{"b":"1"},"reported":` + reported(8176) + `}}`, code: 413},
		{name: "size counted after merge", setup: `{"state":{"desired":` + reported(5000) + `}}`, payload: `{"state":{"reported":` + reported(4000) + `}}`, code: 413},
		{name: "merge that shrinks is accepted", setup: `{"state":{"desired":` + reported(5000) + `}}`, payload: `{"state":{"desired":{"a":null},"reported":` + reported(8000) + `}}`},
		{name: "metadata not counted", payload: `{"state":{"reported":{"l":[` + strings.TrimSuffix(strings.Repeat("1,", 4000), ",") + `]}}}`},
		{name: "depth 6 accepted", payload: `{"state":{"desired":` + deep(6) + `}}`},
		{name: "depth 7 rejected", payload: `{"state":{"desired":` + deep(7) + `}}`, code: 400},
		{name: "depth 7 rejected in reported", payload: `{"state":{"reported":` + deep(7) + `}}`, code: 400},
		{name: "arrays count as levels", payload: `{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":[1]}}}}}}}}`, code: 400},
		{name: "array at level 6 accepted", payload: `{"state":{"desired":{"a":{"b":{"c":{"d":{"e":[1]}}}}}}}`},
		{name: "custom size limit", limits: &Limits{MaxStateBytes: 10}, payload: `{"state":{"reported":` + reported(3) + `}}`, code: 413},
		{name: "custom depth limit", limits: &Limits{MaxDepth: 2}, payload: `{"state":{"reported":` + deep(3) + `}}`, code: 400},
		{name: "zero limits mean defaults", limits: &Limits{}, payload: `{"state":{"reported":` + reported(8184) + `}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.limits != nil {
				f.svc.SetLimits(*tc.limits)
			}
			if tc.setup != "" {
				f.mustUpdate(t, "dev1", "", tc.setup)
			}
			_, err := f.svc.Update("dev1", "", []byte(tc.payload))
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if e := errOf(t, err); e.Code != tc.code {
				t.Errorf("error %v, want code %d", e, tc.code)
			}
		})
	}
}

func TestGetDeleteAcceptAnyPayload(t *testing.T) {
	for _, p := range []string{``, `{}`, `not json`, `{"thingName":"dev1","clientToken":"abc"}`, `[1,2]`, `{"clientToken":"abc","x":[null]}`, `"str"`} {
		t.Run(p, func(t *testing.T) {
			f := newFixture(t)
			f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"a":1}}}`)
			wantTok := ""
			if strings.Contains(p, `"clientToken":"abc"`) {
				wantTok = "abc"
			}
			got := f.mustGet(t, "dev1", "", p)
			if tok, _ := js(t, got).(map[string]any)["clientToken"].(string); tok != wantTok {
				t.Errorf("get clientToken = %q, want %q", tok, wantTok)
			}
			del, err := f.svc.Delete("dev1", "", []byte(p))
			if err != nil {
				t.Fatal(err)
			}
			if tok, _ := js(t, string(del)).(map[string]any)["clientToken"].(string); tok != wantTok {
				t.Errorf("delete clientToken = %q, want %q", tok, wantTok)
			}
		})
	}
}

func TestPersistence(t *testing.T) {
	f := newFixture(t)
	f.mustUpdate(t, "dev1", "", `{"state":{"desired":{"n":1.50},"reported":{"n":1}}}`)
	f.mustUpdate(t, "dev1", "", `{"state":{"reported":{"big":12345678901234567890}}}`)
	f.mustUpdate(t, "dev1", "cfg", `{"state":{"reported":{"x":[1,2]}}}`)
	f.mustUpdate(t, "dev2", "gone", `{"state":{}}`)
	f.mustUpdate(t, "dev2", "gone", `{"state":{}}`)
	if _, err := f.svc.Delete("dev2", "gone", nil); err != nil {
		t.Fatal(err)
	}
	before1 := f.mustGet(t, "dev1", "", ``)
	before2 := f.mustGet(t, "dev1", "cfg", ``)

	f.reopen(t)
	if diff := cmp.Diff(before1, f.mustGet(t, "dev1", "", ``)); diff != "" {
		t.Errorf("classic shadow after reopen (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(before2, f.mustGet(t, "dev1", "cfg", ``)); diff != "" {
		t.Errorf("named shadow after reopen (-before +after):\n%s", diff)
	}
	if !strings.Contains(before1, `"n":1.50`) || !strings.Contains(before1, `12345678901234567890`) {
		t.Errorf("numbers not kept exactly: %s", before1)
	}
	// Versions continue, including after a delete.
	if v := js(t, f.mustUpdate(t, "dev1", "", `{"state":{},"version":2}`)).(map[string]any)["version"]; v != jsonNum("3") {
		t.Errorf("version after reopen = %v, want 3", v)
	}
	if v := js(t, f.mustUpdate(t, "dev2", "gone", `{"state":{}}`)).(map[string]any)["version"]; v != jsonNum("3") {
		t.Errorf("re-created version after reopen = %v, want 3", v)
	}
}

func TestListNamed(t *testing.T) {
	f := newFixture(t)
	f.mustUpdate(t, "dev1", "", `{"state":{}}`)
	for _, n := range []string{"zeta", "alpha", "$package", "mid"} {
		f.mustUpdate(t, "dev1", n, `{"state":{}}`)
	}
	f.mustUpdate(t, "dev10", "other", `{"state":{}}`)
	if _, err := f.svc.Delete("dev1", "mid", nil); err != nil {
		t.Fatal(err)
	}
	got, err := f.svc.ListNamed("dev1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"$package", "alpha", "zeta"}, got); diff != "" {
		t.Errorf("ListNamed (-want +got):\n%s", diff)
	}
	got, err = f.svc.ListNamed("nobody")
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("ListNamed(unknown) = %#v, %v; want empty", got, err)
	}
	if _, err := f.svc.ListNamed("bad/name"); errOf(t, err).Code != 400 {
		t.Errorf("ListNamed(bad name) = %v", err)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 5 {
				if _, err := f.svc.Update("dev1", "", []byte(fmt.Sprintf(`{"state":{"reported":{"k%d":%d}}}`, i, j))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got := js(t, f.mustGet(t, "dev1", "", ``)).(map[string]any)
	if got["version"] != jsonNum("40") {
		t.Errorf("version after 40 concurrent updates = %v", got["version"])
	}
}
