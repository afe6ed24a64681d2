package shadow

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Values in documents are what encoding/json decodes with UseNumber:
// map[string]any, []any, string, json.Number, bool and nil. Values are never
// mutated in place once built: merges copy the objects they change and share
// the untouched subtrees.

// Merge applies patch to one stored section (desired or reported) following
// spec §4: a null value deletes its key, an object patch over a stored object
// recurses, anything else (scalar, array, object over a non-object, new key)
// replaces the stored value wholesale with null leaves dropped; objects
// emptied by deletes stay as {} inside their parent. Neither argument is
// modified. The result is nil when the section ends up empty (rule 4: the
// section is removed from the document). A nil patch (absent or null section)
// is the caller's business; Merge(stored, nil) returns a copy of stored.
func Merge(stored, patch map[string]any) map[string]any {
	out, _ := mergeSection(stored, nil, patch, 0, false)
	return out
}

// mergeSection is Merge that also maintains the section's metadata tree when
// withMeta is set: touched paths get timestamp ts, deleted keys lose their
// metadata, replaced values get a fresh metadata subtree.
func mergeSection(val, meta, patch map[string]any, ts int64, withMeta bool) (map[string]any, map[string]any) {
	v, m := mergeObject(val, meta, patch, ts, withMeta)
	if len(v) == 0 {
		return nil, nil
	}
	return v, m
}

func mergeObject(val, meta, patch map[string]any, ts int64, withMeta bool) (map[string]any, map[string]any) {
	out := make(map[string]any, len(val)+len(patch))
	for k, v := range val {
		out[k] = v
	}
	var mout map[string]any
	if withMeta {
		mout = make(map[string]any, len(meta)+len(patch))
		for k, v := range meta {
			mout[k] = v
		}
	}
	for k, p := range patch {
		if p == nil {
			delete(out, k)
			if withMeta {
				delete(mout, k)
			}
			continue
		}
		if po, ok := p.(map[string]any); ok {
			if so, ok := out[k].(map[string]any); ok {
				var sm map[string]any
				if withMeta {
					sm, _ = mout[k].(map[string]any)
				}
				nv, nm := mergeObject(so, sm, po, ts, withMeta)
				out[k] = nv
				if withMeta {
					mout[k] = nm
				}
				continue
			}
		}
		c := dropNulls(p)
		out[k] = c
		if withMeta {
			mout[k] = metaOf(c, ts)
		}
	}
	return out, mout
}

// dropNulls returns v without the null members of its objects, at any depth.
func dropNulls(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			if e != nil {
				out[k] = dropNulls(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = dropNulls(e)
		}
		return out
	default:
		return v
	}
}

// leafMeta is the metadata of one leaf value.
func leafMeta(ts int64) map[string]any { return map[string]any{"timestamp": ts} }

// metaOf builds the metadata tree mirroring v (spec §4.1): leaves (and null)
// become {"timestamp": ts}, objects recurse, arrays become arrays of the
// metadata of their elements.
func metaOf(v any, ts int64) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = metaOf(e, ts)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = metaOf(e, ts)
		}
		return out
	default:
		return leafMeta(ts)
	}
}

// Delta returns the keys of desired that differ from reported (spec §5.1):
// keys missing from reported carry the whole desired value, objects on both
// sides recurse and keep only differing paths, anything else (arrays,
// scalars, type changes) carries the whole desired value when not equal.
// Numbers compare by value (1 equals 1.0). The result is never nil.
func Delta(desired, reported map[string]any) map[string]any {
	out := make(map[string]any)
	for k, d := range desired {
		r, ok := reported[k]
		if !ok {
			out[k] = d
			continue
		}
		dm, dok := d.(map[string]any)
		rm, rok := r.(map[string]any)
		if dok && rok {
			if sub := Delta(dm, rm); len(sub) > 0 {
				out[k] = sub
			}
			continue
		}
		if !jsonEqual(d, r) {
			out[k] = d
		}
	}
	return out
}

// deltaMeta returns the desired metadata at the paths of delta (spec §5.2).
func deltaMeta(delta, desiredMeta map[string]any) map[string]any {
	out := make(map[string]any, len(delta))
	for k, v := range delta {
		vm, vok := v.(map[string]any)
		mm, mok := desiredMeta[k].(map[string]any)
		if vok && mok {
			out[k] = deltaMeta(vm, mm)
			continue
		}
		if m, ok := desiredMeta[k]; ok {
			out[k] = m
		}
	}
	return out
}

// jsonEqual reports whether two JSON values are equal, numbers by value.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !jsonEqual(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	}
	xs, xok := numberString(a)
	ys, yok := numberString(b)
	return xok && yok && numEqual(xs, ys)
}

// numberString returns the JSON text of a numeric value.
func numberString(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return string(n), true
	case float64:
		return strconv.FormatFloat(n, 'g', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(n), 'g', -1, 32), true
	case int:
		return strconv.FormatInt(int64(n), 10), true
	case int64:
		return strconv.FormatInt(n, 10), true
	case int32:
		return strconv.FormatInt(int64(n), 10), true
	case uint64:
		return strconv.FormatUint(n, 10), true
	}
	return "", false
}

// numEqual compares two JSON number texts exactly, by value: 1, 1.0, 10e-1
// and 0.1e1 are equal. Texts that do not parse compare as strings.
func numEqual(a, b string) bool {
	if a == b {
		return true
	}
	an, ok1 := canonNumber(a)
	bn, ok2 := canonNumber(b)
	if !ok1 || !ok2 {
		return false
	}
	return an == bn
}

type canonNum struct {
	neg    bool
	digits string // significant digits, no leading or trailing zeros; "" is zero
	exp    int64  // value = digits × 10^exp
}

// canonNumber parses a JSON number into a canonical decimal form.
func canonNumber(s string) (canonNum, bool) {
	var c canonNum
	if strings.HasPrefix(s, "-") {
		c.neg = true
		s = s[1:]
	}
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	if intPart == "" || !allDigits(intPart) || !allDigits(frac) {
		return c, false
	}
	var exp int64
	if hasExp {
		e, err := strconv.ParseInt(strings.TrimPrefix(expPart, "+"), 10, 64)
		if err != nil || e > 1<<60 || e < -(1<<60) {
			return c, false
		}
		exp = e
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= int64(len(frac))
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	c.digits = trimmed
	c.exp = exp
	if c.digits == "" {
		return canonNum{}, true // zero, whatever the sign and exponent
	}
	return c, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// depth counts container levels: 0 for a scalar, 1 + the deepest child for an
// object or array. A section's depth is the number of key levels below it
// (spec §9: desired.a.b.c.d.e.f = 1 has depth 6).
func depth(v any) int {
	d := 0
	switch t := v.(type) {
	case map[string]any:
		for _, e := range t {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		for _, e := range t {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

// hasArrayWithNull reports whether v contains an array with a null element.
func hasArrayWithNull(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		for _, e := range t {
			if hasArrayWithNull(e) {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if e == nil || hasArrayWithNull(e) {
				return true
			}
		}
	}
	return false
}

// marshal encodes v as compact JSON without HTML escaping.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// sectionSize is the size limit's measure of one section: its compact JSON
// length, 0 when absent.
func sectionSize(sec map[string]any) (int, error) {
	if sec == nil {
		return 0, nil
	}
	b, err := marshal(sec)
	return len(b), err
}
