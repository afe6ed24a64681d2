package shadow

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

func FuzzUpdate(f *testing.F) {
	for _, s := range []string{
		`{"state":{"desired":{"led":"on","cfg":{"rate":30}},"reported":{"fw":"1.4.2"}},"clientToken":"c0ffee-01"}`,
		`{"state":{"reported":{"a":null,"b":[1,2,{"c":null}],"d":{}}},"version":1}`,
		`{"state":null}`,
		`{"state":{"desired":null,"reported":{"n":1.0e3}}}`,
		`{"state":{"foo":1}}`,
		`{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}`,
		`{"state":"x"}`,
		`{}`,
		`[]`,
		"\xff",
		`{"state":{"reported":{"l":[null]}}}`,
	} {
		f.Add([]byte(s))
	}
	fx := newFixture(f)
	fx.svc.SetLimits(Limits{MaxStateBytes: 512, MaxDepth: 4})
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, payload []byte) {
		thing := fmt.Sprintf("dev%d", n.Add(1))
		// Seed a document so merges run against existing state.
		fx.mustUpdate(t, thing, "", `{"state":{"desired":{"a":{"b":1},"l":[1,2]},"reported":{"a":{"b":2},"s":"x"}}}`)
		acc, err := fx.svc.Update(thing, "", payload)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == 500 {
				t.Fatalf("Update error %v", err)
			}
			return
		}
		if _, err := decodeJSON(acc); err != nil {
			t.Fatalf("accepted document is not JSON: %v\n%s", err, acc)
		}
		doc, err := fx.svc.Get(thing, "", nil)
		if err != nil {
			t.Fatalf("Get after accepted update: %v", err)
		}
		v, err := decodeJSON(doc)
		if err != nil {
			t.Fatalf("get document is not JSON: %v\n%s", err, doc)
		}
		st, _ := v.(map[string]any)["state"].(map[string]any)
		total := 0
		for _, sec := range []string{"desired", "reported"} {
			m, _ := st[sec].(map[string]any)
			if m == nil {
				continue
			}
			if len(m) == 0 {
				t.Errorf("empty section %s kept", sec)
			}
			if hasNullValue(m) {
				t.Errorf("section %s holds null: %s", sec, doc)
			}
			if d := depth(m); d > 4 {
				t.Errorf("section %s has depth %d > 4", sec, d)
			}
			n, err := sectionSize(m)
			if err != nil {
				t.Fatal(err)
			}
			total += n
		}
		if total > 512 {
			t.Errorf("state is %d bytes > 512", total)
		}
	})
}

func hasNullValue(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		for _, e := range t {
			if hasNullValue(e) {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if hasNullValue(e) {
				return true
			}
		}
	}
	return false
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{
		"$aws/things/dev1/shadow/update",
		"$aws/things/dev1/shadow/name/cfg/get/accepted",
		"$aws/things/dev1/shadow/name//update",
		"$aws/things/x/shadow/name/$p/update/documents",
		"$aws/things/dev1/jobs/get",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		thing, name, op, ok := ParseTopic(topic)
		if !ok {
			if thing != "" || name != "" || op != "" {
				t.Errorf("not ok but parts %q %q %q", thing, name, op)
			}
			return
		}
		if !validThingName(thing) || (name != "" && !validShadowName(name)) || !ops[op] {
			t.Errorf("ok with invalid parts %q %q %q", thing, name, op)
		}
		if got := Prefix(thing, name) + "/" + op; got != topic {
			t.Errorf("round trip: %q -> %q", topic, got)
		}
	})
}
