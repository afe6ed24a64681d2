package agent

import (
	"encoding/json"
	"reflect"
	"unicode/utf8"
)

// sameReport reports whether two reported documents are the same once sent
// as JSON, so that an unchanged state is not reported again. One is usually
// the agent's own (Go integers, typed values), the other the shadow's
// (float64 numbers): a number equals a number of the same value whatever
// its Go type. It decides what a JSON round trip of both documents followed
// by reflect.DeepEqual decides, without the round trip for what reported
// documents are made of (maps, strings, bools, numbers, null); any other
// value (typed maps, slices, structs, text that is not UTF-8, which the
// encoder coerces) is round-tripped on its own. The one difference: a
// document JSON cannot encode (a NaN in it) is never the same as another,
// where the round trip made every such document nil, hence all equal.
func sameReport(a, b map[string]any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return sameMap(a, b)
}

func sameMap(a, b map[string]any) bool {
	if !utf8Keys(a) || !utf8Keys(b) {
		return roundTripEqual(a, b)
	}
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !sameValue(va, vb) {
			return false
		}
	}
	return true
}

func utf8Keys(m map[string]any) bool {
	for k := range m {
		if !utf8.ValidString(k) {
			return false
		}
	}
	return true
}

// jsonKind is the JSON type a value encodes to, when it is one sameValue
// compares itself.
type jsonKind int

const (
	kindOther jsonKind = iota // left to roundTripEqual
	kindNull
	kindBool
	kindString
	kindNumber
	kindObject
)

func kindOf(v any) jsonKind {
	switch x := v.(type) {
	case nil:
		return kindNull
	case bool:
		return kindBool
	case string:
		if utf8.ValidString(x) {
			return kindString
		}
	case map[string]any:
		if x == nil {
			return kindNull
		}
		return kindObject
	default:
		if _, ok := jsonNumber(v); ok {
			return kindNumber
		}
	}
	return kindOther
}

func sameValue(a, b any) bool {
	ka, kb := kindOf(a), kindOf(b)
	if ka == kindOther || kb == kindOther {
		return roundTripEqual(a, b)
	}
	if ka != kb {
		return false // different JSON types
	}
	switch ka {
	case kindBool:
		return a.(bool) == b.(bool)
	case kindString:
		return a.(string) == b.(string)
	case kindNumber:
		fa, _ := jsonNumber(a)
		fb, _ := jsonNumber(b)
		return fa == fb
	case kindObject:
		return sameMap(a.(map[string]any), b.(map[string]any))
	}
	return true // both null
}

// jsonNumber returns v as the float64 that a JSON round trip makes of it,
// for the Go number types whose encoding parses back to exactly that
// (float32, encoded with 32-bit precision, is left to the round trip).
func jsonNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint:
		return float64(x), true
	case json.Number: // the shadow client's numbers
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// roundTripEqual compares a and b as JSON sees them: encoded, decoded,
// then reflect.DeepEqual.
func roundTripEqual(a, b any) bool {
	return reflect.DeepEqual(roundTrip(a), roundTrip(b))
}

func roundTrip(v any) any {
	j, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(j, &out)
	return out
}
