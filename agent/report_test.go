package agent

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// oldSame is what the sync loop used to decide, the semantics sameReport
// keeps: both documents round-tripped through JSON, then DeepEqual.
func oldSame(a, b map[string]any) bool {
	rt := func(m map[string]any) any {
		j, _ := json.Marshal(m)
		var v any
		_ = json.Unmarshal(j, &v)
		return v
	}
	return reflect.DeepEqual(rt(a), rt(b))
}

// fromJSON is a document as the shadow returns it (numbers as float64).
func fromJSON(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSameReport(t *testing.T) {
	type m = map[string]any
	tests := []struct {
		name string
		a, b map[string]any
		want bool
	}{
		{"identical", m{"x": 1, "s": "a", "b": true}, m{"x": 1, "s": "a", "b": true}, true},
		{"int and float64", m{"interval_s": 60}, m{"interval_s": 60.0}, true},
		{"uint64 and float64", m{"dropped": uint64(3)}, m{"dropped": 3.0}, true},
		{"int64 and float64, large", m{"t": int64(1763712000)}, m{"t": 1763712000.0}, true},
		{"beyond 2^53: equal once sent", m{"n": int64(1<<53 + 1)}, m{"n": float64(1 << 53)}, true},
		{"largest uint64", m{"n": uint64(math.MaxUint64)}, m{"n": float64(math.MaxUint64)}, true},
		{"negative zero", m{"z": math.Copysign(0, -1)}, m{"z": 0}, true},
		{"other number", m{"max_c": 30.0}, m{"max_c": 30.5}, false},
		{"number and string", m{"v": 1}, m{"v": "1"}, false},
		{"bool and string", m{"v": true}, m{"v": "true"}, false},
		{"nested", m{"alarm": m{"armed": true, "state": "off"}}, m{"alarm": m{"armed": true, "state": "off"}}, true},
		{"nested differs", m{"alarm": m{"armed": true}}, m{"alarm": m{"armed": false}}, false},
		{"key missing", m{"a": 1, "b": 2}, m{"a": 1}, false},
		{"extra key", m{"a": 1}, m{"a": 1, "c": nil}, false},
		{"nil and missing", m{"a": nil}, m{"b": nil}, false},
		{"empty and nil map", m{"outputs": m{}}, m{"outputs": map[string]any(nil)}, false},
		{"nil map and null", m{"outputs": map[string]any(nil)}, m{"outputs": nil}, true},
		{"typed map and generic", m{"outputs": map[string]bool{"led": true}}, m{"outputs": m{"led": true}}, true},
		{"slices", m{"l": []any{1, "a"}}, m{"l": []any{1.0, "a"}}, true},
		{"slices differ", m{"l": []any{1, 2}}, m{"l": []any{2, 1}}, false},
		{"typed slice", m{"l": []string{"a"}}, m{"l": []any{"a"}}, true},
		{"float32 as sent", m{"f": float32(0.1)}, m{"f": 0.1}, true},
		{"invalid UTF-8 becomes U+FFFD", m{"s": "a\xff"}, m{"s": "a\xfe"}, true},
		{"invalid UTF-8 key", m{"a\xff": 1}, m{"a\ufffd": 1}, true},
		{"HTML characters", m{"s": "<&>"}, m{"s": "<&>"}, true},
		{"struct and map", m{"v": struct {
			A int `json:"a"`
		}{1}}, m{"v": m{"a": 1}}, true},
		{"both nil", nil, nil, true},
		{"nil and empty", nil, m{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if old := oldSame(tc.a, tc.b); old != tc.want {
				t.Fatalf("the old comparison says %v: the table is wrong", old)
			}
			if got := sameReport(tc.a, tc.b); got != tc.want {
				t.Errorf("sameReport = %v, want %v", got, tc.want)
			}
			if got := sameReport(tc.b, tc.a); got != tc.want {
				t.Errorf("sameReport (swapped) = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSameReportAgentDocument: the agent's own document equals the shadow's
// copy of it (as JSON returns it), and a change in any leaf shows.
func TestSameReportAgentDocument(t *testing.T) {
	a := benchAgent(t)
	cur := a.reported()
	j, err := json.Marshal(cur)
	if err != nil {
		t.Fatal(err)
	}
	shadow := fromJSON(t, string(j))
	if !sameReport(cur, shadow) || !sameReport(shadow, cur) {
		t.Fatalf("the document and its JSON copy differ:\n%v\n%v", cur, shadow)
	}
	a.st.Parts["bme280"].Values["temperature_c"] += 0.5
	if sameReport(a.reported(), shadow) {
		t.Error("a changed temperature was not seen")
	}
}

// FuzzSameReport checks sameReport against the old JSON round trip on two
// documents, each also with its integral numbers turned into ints (the
// agent's own documents carry Go integers, the shadow's float64).
func FuzzSameReport(f *testing.F) {
	f.Add(`{"a":1,"b":{"c":"x"}}`, `{"a":1.0,"b":{"c":"x"}}`)
	f.Add(`{"a":[1,2,{"b":null}]}`, `{"a":[1,2,{"b":false}]}`)
	f.Add(`{"s":"\u00e9"}`, `{"s":"é"}`)
	f.Fuzz(func(t *testing.T, x, y string) {
		var a, b map[string]any
		if json.Unmarshal([]byte(x), &a) != nil || json.Unmarshal([]byte(y), &b) != nil {
			return
		}
		for _, pair := range [][2]map[string]any{{a, b}, {withInts(a), b}, {a, withInts(b)}, {withInts(a), withInts(a)}} {
			if got, want := sameReport(pair[0], pair[1]), oldSame(pair[0], pair[1]); got != want {
				t.Fatalf("sameReport(%v, %v) = %v, the JSON round trip says %v", pair[0], pair[1], got, want)
			}
		}
	})
}

// withInts copies m with every integral float64 that fits turned into an
// int64.
func withInts(m map[string]any) map[string]any {
	var conv func(v any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<62 {
				return int64(x)
			}
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				out[k] = conv(e)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = conv(e)
			}
			return out
		}
		return v
	}
	if m == nil {
		return nil
	}
	return conv(m).(map[string]any)
}
