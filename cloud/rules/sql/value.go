package sql

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// undefinedT is the type of Undefined.
type undefinedT struct{}

// Undefined is AWS IoT SQL's Undefined: a missing key, a function's answer
// to an argument it does not take, an operator's answer to operands of the
// wrong type.
var Undefined any = undefinedT{}

// IsUndefined reports whether v is Undefined.
func IsUndefined(v any) bool { _, ok := v.(undefinedT); return ok }

// rawBytes is a payload that is not JSON, as * selects it.
type rawBytes []byte

// decodeJSON decodes a payload into SQL values: whole numbers become Int
// (as SQL version 2016-03-23 has them), others Decimal.
func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return fromJSON(v), nil
}

func fromJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		return number(string(x))
	case []any:
		for i := range x {
			x[i] = fromJSON(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = fromJSON(x[k])
		}
	}
	return v
}

// number parses a JSON number: Int when it is whole and fits, else Decimal.
func number(s string) any {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return Undefined
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		return int64(f)
	}
	return f
}

// toNumber converts Int, Decimal and numeric strings to a number (int64 or
// float64); ok is false for anything else.
func toNumber(v any) (any, bool) {
	switch x := v.(type) {
	case int64, float64:
		return x, true
	case string:
		n := number(strings.TrimSpace(x))
		if IsUndefined(n) {
			return nil, false
		}
		return n, true
	}
	return nil, false
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case float64:
		return x
	}
	return math.NaN()
}

// toString is a value's string form, as concat and substitution
// templates write it: strings as they are, others as JSON.
func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case rawBytes:
		return string(x)
	case undefinedT:
		return ""
	}
	b, _ := marshalValue(v)
	return string(b)
}

// marshalValue encodes a SQL value as JSON. Undefined members of objects
// are left out; an Undefined element of an array becomes null.
func marshalValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	err := writeValue(&buf, v)
	return buf.Bytes(), err
}

func writeValue(buf *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil, undefinedT:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case int64:
		buf.WriteString(strconv.FormatInt(x, 10))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			buf.WriteString("null")
			return nil
		}
		buf.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
	case string:
		b, _ := json.Marshal(x)
		buf.Write(b)
	case rawBytes:
		b, _ := json.Marshal(string(x))
		buf.Write(b)
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeValue(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		o := &object{}
		for _, k := range sortedKeys(x) {
			o.set(k, x[k])
		}
		return writeValue(buf, o)
	case *object:
		buf.WriteByte('{')
		n := 0
		for _, k := range x.keys {
			e := x.vals[k]
			if IsUndefined(e) {
				continue
			}
			if n > 0 {
				buf.WriteByte(',')
			}
			n++
			kb, _ := json.Marshal(k)
			buf.Write(kb)
			buf.WriteByte(':')
			if err := writeValue(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("sql: cannot encode %T", v)
	}
	return nil
}

// object is a JSON object that keeps its keys in the order they were set:
// a SELECT's result, in the order of its items.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) set(k string, v any) {
	if o.vals == nil {
		o.vals = map[string]any{}
	}
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
