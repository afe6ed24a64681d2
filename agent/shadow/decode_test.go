package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func nested(levels int, inner string) string {
	return strings.Repeat(`{"a":`, levels) + inner + strings.Repeat(`}`, levels)
}

func TestDecodeObject(t *testing.T) {
	deepest := func() any { // what DecodeObject makes of nested(n, ...) under one key, n >= MaxDepth
		var v any = tooDeep()
		for i := 0; i < MaxDepth-1; i++ {
			v = map[string]any{"a": v}
		}
		return v
	}
	tests := []struct {
		name string
		in   string
		want map[string]any
	}{
		{"beyond float64", `{"evil":1e400,"alarm":{"armed":false}}`,
			map[string]any{"evil": json.Number("1e400"), "alarm": map[string]any{"armed": false}}},
		{"beyond int64", `{"n":18446744073709551616,"m":-9223372036854775809}`,
			map[string]any{"n": json.Number("18446744073709551616"), "m": json.Number("-9223372036854775809")}},
		{"nested as deep as kept", `{"x":` + nested(MaxDepth-2, "1") + `}`,
			func() map[string]any {
				var v any = json.Number("1")
				for i := 0; i < MaxDepth-2; i++ {
					v = map[string]any{"a": v}
				}
				return map[string]any{"x": v}
			}()},
		{"deeper than kept", `{"x":` + nested(MaxDepth+3, "1") + `,"y":true}`,
			map[string]any{"x": deepest(), "y": true}},
		{"deeper than encoding/json goes", `{"x":` + nested(20000, "[1]") + `,"y":[1,{"b":null}]}`,
			map[string]any{"x": deepest(), "y": []any{json.Number("1"), map[string]any{"b": nil}}}},
		{"arrays count", `{"x":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`,
			func() map[string]any {
				var v any = tooDeep()
				for i := 0; i < MaxDepth-1; i++ {
					v = []any{v}
				}
				return map[string]any{"x": v}
			}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeObject([]byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeObject: %v", err)
			}
			// Not cmp.Diff: it takes exponential time on deeply nested slices.
			if !reflect.DeepEqual(tt.want, got) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestDecodeObjectRefusesWhatIsNotAnObject(t *testing.T) {
	for _, in := range []string{``, `null`, `[1]`, `"s"`, `{"a":1} x`, `{"a":1}{}`, `{"a":`, nested(20000, "1,"), `{"a":1e400`} {
		if _, err := DecodeObject([]byte(in)); !errors.Is(err, ErrBadDocument) {
			t.Errorf("DecodeObject(%.40q) = %v, want ErrBadDocument", in, err)
		}
	}
}

// FuzzDecodeObject: DecodeObject never panics; whatever encoding/json
// decodes (with UseNumber) it decodes to the same tree (below MaxDepth),
// and its token reader agrees with its fast path.
func FuzzDecodeObject(f *testing.F) {
	f.Add([]byte(`{"state":{"desired":{"evil":1e400,"alarm":{"armed":false}}},"version":3}`))
	f.Add([]byte(`{"a":[1,2,{"b":"c\u00e9"}],"n":null,"t":true}`))
	f.Add([]byte(`{"x":` + nested(40, "[]") + `}`))
	f.Add([]byte(`{"x":` + nested(3, "1") + ` }   `))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeObject(data)
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var std map[string]any
		stdErr := dec.Decode(&std)
		if stdErr == nil && dec.More() {
			stdErr = errors.New("trailing data")
		}
		if stdErr == nil && std != nil && json.Valid(data) {
			if err != nil {
				t.Fatalf("DecodeObject failed where encoding/json did not: %v", err)
			}
			if want := capDepth(std, 1); !reflect.DeepEqual(want, got) {
				t.Fatalf("differs from encoding/json:\n got %v\nwant %v", got, want)
			}
		}
		if err != nil {
			return
		}
		tok, err := decodeTokens(data)
		if err != nil {
			t.Fatalf("the token reader fails where the fast path did not: %v", err)
		}
		if !reflect.DeepEqual(got, tok) {
			t.Fatalf("the token reader differs:\n  fast %v\ntokens %v", got, tok)
		}
	})
}
