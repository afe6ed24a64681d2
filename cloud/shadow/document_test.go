package shadow

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// js decodes a JSON literal the way the service does (exact numbers).
func js(t testing.TB, s string) any {
	t.Helper()
	v, err := decodeJSON([]byte(s))
	if err != nil {
		t.Fatalf("bad test JSON %q: %v", s, err)
	}
	return v
}

func jsObj(t testing.TB, s string) map[string]any {
	t.Helper()
	if s == "null" {
		return nil
	}
	m, ok := js(t, s).(map[string]any)
	if !ok {
		t.Fatalf("test JSON %q is not an object", s)
	}
	return m
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name, stored, patch, want string
	}{
		{"null deletes key", `{"a":1,"b":2}`, `{"a":null}`, `{"b":2}`},
		{"null on missing key is a no-op", `{"b":2}`, `{"zz":null}`, `{"b":2}`},
		{"object over object recurses", `{"a":{"x":1,"y":2}}`, `{"a":{"y":3,"z":4}}`, `{"a":{"x":1,"y":3,"z":4}}`},
		{"nested null deletes nested key", `{"a":{"x":1,"y":2}}`, `{"a":{"x":null}}`, `{"a":{"y":2}}`},
		{"scalar replaces scalar", `{"a":1}`, `{"a":"on"}`, `{"a":"on"}`},
		{"new key added", `{"a":1}`, `{"b":true}`, `{"a":1,"b":true}`},
		{"array replaced whole", `{"a":[1,2,3]}`, `{"a":[4]}`, `{"a":[4]}`},
		{"array replaces object", `{"a":{"x":1}}`, `{"a":[1,2]}`, `{"a":[1,2]}`},
		{"object replaces array", `{"a":[1,2]}`, `{"a":{"x":1}}`, `{"a":{"x":1}}`},
		{"object over scalar replaces wholesale", `{"a":5}`, `{"a":{"x":1}}`, `{"a":{"x":1}}`},
		{"scalar over object replaces wholesale", `{"a":{"x":1}}`, `{"a":5}`, `{"a":5}`},
		{"empty object is stored", `{}`, `{"d":{}}`, `{"d":{}}`},
		{"empty object replaces scalar", `{"c":3}`, `{"c":{}}`, `{"c":{}}`},
		{"empty object over object changes nothing", `{"c":{"x":1}}`, `{"c":{}}`, `{"c":{"x":1}}`},
		{"null leaves inside a replacing object are dropped", `{"c":3}`, `{"c":{"x":null,"y":{"z":null,"w":1}}}`, `{"c":{"y":{"w":1}}}`},
		{"section emptied by deletes is removed", `{"a":1}`, `{"a":null}`, `null`},
		{"empty patch on absent section leaves it absent", `null`, `{}`, `null`},
		{"null-only patch on absent section leaves it absent", `null`, `{"a":null}`, `null`},
		{"patch creates absent section", `null`, `{"a":1}`, `{"a":1}`},
		{"nested object emptied by deletes stays {}", `{"a":{"b":1},"c":1}`, `{"a":{"b":null}}`, `{"a":{},"c":1}`},
		{"only nested object emptied keeps section", `{"a":{"b":1}}`, `{"a":{"b":null}}`, `{"a":{}}`},
		{"numbers kept exactly", `{}`, `{"n":12345678901234567890.000,"f":1.50}`, `{"n":12345678901234567890.000,"f":1.50}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Merge(jsObj(t, tc.stored), jsObj(t, tc.patch))
			want := jsObj(t, tc.want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Merge(%s, %s) (-want +got):\n%s", tc.stored, tc.patch, diff)
			}
		})
	}
}

func TestMergeDoesNotModifyInputs(t *testing.T) {
	stored := jsObj(t, `{"a":{"b":1,"c":{"d":2}},"e":[1]}`)
	patch := jsObj(t, `{"a":{"b":null,"c":{"d":3}},"e":null,"f":{"g":null}}`)
	_ = Merge(stored, patch)
	if diff := cmp.Diff(jsObj(t, `{"a":{"b":1,"c":{"d":2}},"e":[1]}`), stored); diff != "" {
		t.Errorf("stored modified (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(jsObj(t, `{"a":{"b":null,"c":{"d":3}},"e":null,"f":{"g":null}}`), patch); diff != "" {
		t.Errorf("patch modified (-want +got):\n%s", diff)
	}
}

func TestMergeMetadata(t *testing.T) {
	tests := []struct {
		name              string
		val, meta, patch  string
		wantVal, wantMeta string
	}{
		{"touched paths get the new time, others keep theirs",
			`{"Color":"red","Status":"ok"}`, `{"Color":{"timestamp":1},"Status":{"timestamp":1}}`,
			`{"Status":"bad"}`,
			`{"Color":"red","Status":"bad"}`, `{"Color":{"timestamp":1},"Status":{"timestamp":9}}`},
		{"deleted keys lose their metadata",
			`{"a":1,"b":2}`, `{"a":{"timestamp":1},"b":{"timestamp":1}}`, `{"a":null}`,
			`{"b":2}`, `{"b":{"timestamp":1}}`},
		{"array gets one entry per element",
			`{}`, `{}`, `{"rgb":[128,128,128]}`,
			`{"rgb":[128,128,128]}`, `{"rgb":[{"timestamp":9},{"timestamp":9},{"timestamp":9}]}`},
		{"replacing an array replaces its metadata array",
			`{"rgb":[1,2,3]}`, `{"rgb":[{"timestamp":1},{"timestamp":1},{"timestamp":1}]}`, `{"rgb":[4]}`,
			`{"rgb":[4]}`, `{"rgb":[{"timestamp":9}]}`},
		{"objects in arrays recurse",
			`{}`, `{}`, `{"l":[{"x":1},[2]]}`,
			`{"l":[{"x":1},[2]]}`, `{"l":[{"x":{"timestamp":9}},[{"timestamp":9}]]}`},
		{"type change object to scalar replaces metadata subtree",
			`{"a":{"x":1,"y":2}}`, `{"a":{"x":{"timestamp":1},"y":{"timestamp":1}}}`, `{"a":5}`,
			`{"a":5}`, `{"a":{"timestamp":9}}`},
		{"type change scalar to object replaces metadata subtree",
			`{"a":5}`, `{"a":{"timestamp":1}}`, `{"a":{"x":1}}`,
			`{"a":{"x":1}}`, `{"a":{"x":{"timestamp":9}}}`},
		{"nested merge touches only nested path",
			`{"a":{"x":1,"y":2}}`, `{"a":{"x":{"timestamp":1},"y":{"timestamp":1}}}`, `{"a":{"y":3}}`,
			`{"a":{"x":1,"y":3}}`, `{"a":{"x":{"timestamp":1},"y":{"timestamp":9}}}`},
		{"empty object value has empty metadata",
			`{}`, `{}`, `{"d":{}}`, `{"d":{}}`, `{"d":{}}`},
		{"emptied section drops its metadata",
			`{"a":1}`, `{"a":{"timestamp":1}}`, `{"a":null}`, `null`, `null`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, m := mergeSection(jsObj(t, tc.val), jsObj(t, tc.meta), jsObj(t, tc.patch), 9, true)
			// Round-trip to compare int64 timestamps with decoded json.Numbers.
			if diff := cmp.Diff(js(t, tc.wantVal), roundTrip(t, v)); diff != "" {
				t.Errorf("value (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(js(t, tc.wantMeta), roundTrip(t, m)); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
		})
	}
}

func roundTrip(t testing.TB, v any) any {
	t.Helper()
	if m, ok := v.(map[string]any); ok && m == nil {
		v = nil
	}
	b, err := marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return js(t, string(b))
}

func TestDelta(t *testing.T) {
	tests := []struct {
		name, desired, reported, want string
	}{
		{"key missing from reported gives whole value", `{"a":{"x":1},"b":2}`, `{"b":2}`, `{"a":{"x":1}}`},
		{"equal scalars give nothing", `{"a":1,"b":"x","c":true}`, `{"a":1,"b":"x","c":true}`, `{}`},
		{"differing scalar gives desired value", `{"a":"on"}`, `{"a":"off"}`, `{"a":"on"}`},
		{"keys only in reported never appear", `{"a":1}`, `{"a":1,"z":2}`, `{}`},
		{"nested objects keep only differing leaves with path", `{"a":{"b":{"c":"d2"}}}`, `{"a":{"b":{"c":"d","e":"f"}}}`, `{"a":{"b":{"c":"d2"}}}`},
		{"nested equal objects give nothing", `{"a":{"b":1}}`, `{"a":{"b":1,"c":2}}`, `{}`},
		{"array element removed gives whole array", `{"l":[1,2,3]}`, `{"l":[1,2]}`, `{"l":[1,2,3]}`},
		{"array element changed gives whole array", `{"l":[1,2,3]}`, `{"l":[1,9,3]}`, `{"l":[1,2,3]}`},
		{"array order matters", `{"l":[1,2]}`, `{"l":[2,1]}`, `{"l":[1,2]}`},
		{"nested lists compared whole", `{"l":[[1,2],[3]]}`, `{"l":[[1,2],[4]]}`, `{"l":[[1,2],[3]]}`},
		{"append to nested list", `{"l":[[1,2],[3,4]]}`, `{"l":[[1,2],[3]]}`, `{"l":[[1,2],[3,4]]}`},
		{"equal arrays give nothing", `{"l":[1,{"x":[2]}]}`, `{"l":[1,{"x":[2]}]}`, `{}`},
		{"reported absent gives desired incl empty objects", `{"a":1,"d":{}}`, `null`, `{"a":1,"d":{}}`},
		{"type change gives whole desired value", `{"a":{"x":1}}`, `{"a":5}`, `{"a":{"x":1}}`},
		{"scalar over reported object gives desired", `{"a":5}`, `{"a":{"x":1}}`, `{"a":5}`},
		{"desired empty object vs non-empty reported object", `{"a":{}}`, `{"a":{"x":1}}`, `{}`},
		{"1 equals 1.0", `{"n":1}`, `{"n":1.0}`, `{}`},
		{"1 equals 1e0 and 100 equals 1E2", `{"n":1,"m":100}`, `{"n":1e0,"m":1E2}`, `{}`},
		{"0 equals -0.0", `{"n":0}`, `{"n":-0.0}`, `{}`},
		{"0.5 equals 5e-1", `{"n":0.5}`, `{"n":5e-1}`, `{}`},
		{"1 differs from 2", `{"n":1}`, `{"n":2}`, `{"n":1}`},
		{"-1 differs from 1", `{"n":-1}`, `{"n":1}`, `{"n":-1}`},
		{"big integers compare exactly", `{"n":12345678901234567890}`, `{"n":12345678901234567891}`, `{"n":12345678901234567890}`},
		{"number differs from string", `{"n":1}`, `{"n":"1"}`, `{"n":1}`},
		{"null reported value differs", `{"n":false}`, `{"n":null}`, `{"n":false}`},
		{"both absent", `null`, `null`, `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Delta(jsObj(t, tc.desired), jsObj(t, tc.reported))
			if diff := cmp.Diff(jsObj(t, tc.want), got); diff != "" {
				t.Errorf("Delta(%s, %s) (-want +got):\n%s", tc.desired, tc.reported, diff)
			}
		})
	}
}

func TestDeltaMetadataIsDesiredMetadata(t *testing.T) {
	desired := jsObj(t, `{"Color":"red","Status":"Great","a":{"b":1,"c":2},"l":[1]}`)
	dmeta := jsObj(t, `{"Color":{"timestamp":1},"Status":{"timestamp":2},"a":{"b":{"timestamp":3},"c":{"timestamp":4}},"l":[{"timestamp":5}]}`)
	reported := jsObj(t, `{"Color":"red","Status":"Awful","a":{"b":1,"c":9}}`)
	d := Delta(desired, reported)
	if diff := cmp.Diff(jsObj(t, `{"Status":"Great","a":{"c":2},"l":[1]}`), d); diff != "" {
		t.Errorf("delta (-want +got):\n%s", diff)
	}
	want := jsObj(t, `{"Status":{"timestamp":2},"a":{"c":{"timestamp":4}},"l":[{"timestamp":5}]}`)
	if diff := cmp.Diff(want, deltaMeta(d, dmeta)); diff != "" {
		t.Errorf("delta metadata (-want +got):\n%s", diff)
	}
}

func TestNumEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1", "1", true}, {"1", "1.0", true}, {"10", "1e1", true}, {"10", "1E+1", true},
		{"0.001", "1e-3", true}, {"-0", "0", true}, {"0e5", "0.000", true},
		{"1", "2", false}, {"1", "-1", false}, {"1.1", "1.01", false},
		{"1e99999999999999999999", "1e99999999999999999999", true}, // unparsable exponent: text equality
		{"1e99999999999999999999", "1e99999999999999999998", false},
	}
	for _, tc := range tests {
		if got := numEqual(tc.a, tc.b); got != tc.want {
			t.Errorf("numEqual(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	// Non-json.Number numeric types (for callers building documents in Go).
	if !jsonEqual(json.Number("2.0"), float64(2)) || !jsonEqual(int64(3), json.Number("3")) {
		t.Error("Go numbers do not compare by value with json.Number")
	}
}

func TestDepth(t *testing.T) {
	tests := []struct {
		doc  string
		want int
	}{
		{`1`, 0}, {`{}`, 1}, {`{"a":1}`, 1}, {`{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}`, 6},
		{`{"a":[1]}`, 2}, {`{"a":[[{"b":1}]]}`, 4},
	}
	for _, tc := range tests {
		if got := depth(js(t, tc.doc)); got != tc.want {
			t.Errorf("depth(%s) = %d, want %d", tc.doc, got, tc.want)
		}
	}
}

func TestMarshalIsCompactAndUnescaped(t *testing.T) {
	b, err := marshal(jsObj(t, `{"a": "<&>", "b": [1, 2.50]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"a":"<&>","b":[1,2.50]}`; got != want {
		t.Errorf("marshal = %s, want %s", got, want)
	}
	if strings.Contains(string(b), "\n") {
		t.Error("trailing newline")
	}
}
