package sql

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

type function struct {
	min, max int // argument counts; max -1 is any
	fn       func(e *env, args []any) any
}

func (f function) arity() string {
	switch {
	case f.min == f.max:
		return strconv.Itoa(f.min) + " arguments"
	case f.max < 0:
		return "at least " + strconv.Itoa(f.min) + " arguments"
	}
	return strconv.Itoa(f.min) + " to " + strconv.Itoa(f.max) + " arguments"
}

// functions are the built-in functions, by lower-case name (function
// names are case-insensitive).
var functions map[string]function

func init() {
	functions = map[string]function{
		"topic":       {0, 1, fnTopic},
		"clientid":    {0, 0, func(e *env, _ []any) any { return orNA(e.m.ClientID) }},
		"principal":   {0, 0, func(e *env, _ []any) any { return e.m.Principal }},
		"timestamp":   {0, 0, func(e *env, _ []any) any { return e.m.Time.UnixMilli() }},
		"newuuid":     {0, 0, fnNewUUID},
		"upper":       {1, 1, stringFn(strings.ToUpper)},
		"lower":       {1, 1, stringFn(strings.ToLower)},
		"concat":      {1, -1, fnConcat},
		"substring":   {2, 3, fnSubstring},
		"abs":         {1, 1, numFn(func(i int64) int64 { return max(i, -i) }, math.Abs)},
		"round":       {1, 1, numFn(nil, math.Round)},
		"floor":       {1, 1, numFn(nil, math.Floor)},
		"ceil":        {1, 1, numFn(nil, math.Ceil)},
		"cast":        {2, 2, fnCast},
		"isundefined": {1, 1, func(_ *env, a []any) any { return IsUndefined(a[0]) }},
		"isnull":      {1, 1, func(_ *env, a []any) any { return a[0] == nil }},
		"get":         {2, 2, fnGet},
		"encode":      {2, 2, fnEncode},
		"decode":      {2, 2, fnDecode},
		"parse_time":  {2, 3, fnParseTime},
	}
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

// fnTopic: topic() is the whole topic, topic(n) its n-th level (from 1).
func fnTopic(e *env, a []any) any {
	if len(a) == 0 {
		return e.m.Topic
	}
	n, ok := toNumber(a[0])
	if !ok {
		return Undefined
	}
	i := int(math.Floor(toFloat(n)))
	levels := strings.Split(e.m.Topic, "/")
	if i < 1 || i > len(levels) {
		return Undefined
	}
	return levels[i-1]
}

func fnNewUUID(e *env, _ []any) any {
	if e.m.NewUUID != nil {
		return e.m.NewUUID()
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// stringFn applies f to a String; any other type is Undefined.
func stringFn(f func(string) string) func(*env, []any) any {
	return func(_ *env, a []any) any {
		s, ok := a[0].(string)
		if !ok {
			return Undefined
		}
		return f(s)
	}
}

// numFn applies a numeric function: an Int stays an Int (fi, or as it is
// when fi is nil: round(5) is 5); a Decimal (or numeric string) gives fd's
// result, an Int when fi is nil (round, floor, ceil return whole numbers).
func numFn(fi func(int64) int64, fd func(float64) float64) func(*env, []any) any {
	return func(_ *env, a []any) any {
		n, ok := toNumber(a[0])
		if !ok {
			return Undefined
		}
		if i, ok := n.(int64); ok {
			if fi != nil {
				return fi(i)
			}
			return i
		}
		r := fd(n.(float64))
		if fi == nil && math.Abs(r) < 1<<63 {
			return int64(r)
		}
		return r
	}
}

// fnConcat joins arrays (and appends other values to an array) or, with
// no array, joins the values' string forms. Undefined makes Undefined.
func fnConcat(_ *env, a []any) any {
	hasArray := false
	for _, v := range a {
		if IsUndefined(v) {
			return Undefined
		}
		if _, ok := v.([]any); ok {
			hasArray = true
		}
	}
	if len(a) == 1 {
		return a[0]
	}
	if hasArray {
		var out []any
		for _, v := range a {
			if arr, ok := v.([]any); ok {
				out = append(out, arr...)
			} else {
				out = append(out, v)
			}
		}
		return out
	}
	var b strings.Builder
	for _, v := range a {
		b.WriteString(toString(v))
	}
	return b.String()
}

// fnSubstring: substring(s, from[, to]) with 0-based indexes in
// characters, decimals rounded down, clamped to the string; a non-string
// first argument is taken in its string form.
func fnSubstring(_ *env, a []any) any {
	var s string
	switch x := a[0].(type) {
	case string:
		s = x
	case int64, float64, bool:
		s = toString(x)
	default:
		return Undefined
	}
	runes := []rune(s)
	idx := func(v any) (int, bool) {
		n, ok := toNumber(v)
		if !ok {
			return 0, false
		}
		f := math.Floor(toFloat(n))
		return int(max(0, min(f, float64(len(runes))))), true
	}
	from, ok := idx(a[1])
	if !ok {
		return Undefined
	}
	to := len(runes)
	if len(a) == 3 {
		if to, ok = idx(a[2]); !ok {
			return Undefined
		}
	}
	if to <= from {
		return ""
	}
	return string(runes[from:to])
}

// fnCast converts a value to Int, Decimal, String or Boolean; what cannot
// be converted is Undefined.
func fnCast(_ *env, a []any) any {
	v, typ := a[0], a[1].(string)
	switch typ {
	case "string":
		switch v.(type) {
		case undefinedT:
			return Undefined
		case nil:
			return Undefined
		}
		return toString(v)
	case "boolean", "bool":
		switch x := v.(type) {
		case bool:
			return x
		case int64:
			return x != 0
		case float64:
			return x != 0
		case string:
			if b, ok := toBool(x); ok {
				return b
			}
		}
		return Undefined
	case "int", "decimal":
		var n any
		switch x := v.(type) {
		case bool:
			n = int64(0)
			if x {
				n = int64(1)
			}
		default:
			var ok bool
			if n, ok = toNumber(x); !ok {
				return Undefined
			}
		}
		if typ == "decimal" {
			return toFloat(n)
		}
		if f, ok := n.(float64); ok {
			if math.Abs(f) >= 1<<63 {
				return Undefined
			}
			return int64(math.Floor(f))
		}
		return n
	}
	return Undefined
}

// fnGet: an array's element at an Int index, an object's member by name,
// a string's character.
func fnGet(_ *env, a []any) any {
	switch x := a[0].(type) {
	case []any:
		i, ok := a[1].(int64)
		if !ok || i < 0 || i >= int64(len(x)) {
			return Undefined
		}
		return x[i]
	case map[string]any:
		k, ok := a[1].(string)
		if !ok {
			return Undefined
		}
		return getMember(x, k)
	case string:
		i, ok := a[1].(int64)
		r := []rune(x)
		if !ok || i < 0 || i >= int64(len(r)) {
			return Undefined
		}
		return string(r[i])
	}
	return Undefined
}

func scheme(v any) bool {
	s, ok := v.(string)
	return ok && strings.EqualFold(s, "base64")
}

// fnEncode: encode(value, 'base64'), value * for the whole payload.
func fnEncode(_ *env, a []any) any {
	if !scheme(a[1]) || IsUndefined(a[0]) {
		return Undefined
	}
	var b []byte
	switch x := a[0].(type) {
	case rawBytes:
		b = x
	case string:
		b = []byte(x)
	default:
		var err error
		if b, err = marshalValue(x); err != nil {
			return Undefined
		}
	}
	return base64.StdEncoding.EncodeToString(b)
}

// fnDecode: decode(value, 'base64') of a base64 string; the result is a
// string (Undefined if it is not base64 of UTF-8 text).
func fnDecode(_ *env, a []any) any {
	s, ok := a[0].(string)
	if !ok || !scheme(a[1]) {
		return Undefined
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || !utf8.Valid(b) {
		return Undefined
	}
	return string(b)
}

// fnParseTime: parse_time(pattern, epochMillis[, timezone]) formats a
// time with a Joda-Time pattern, in UTC unless a zone is given.
func fnParseTime(_ *env, a []any) any {
	pattern, ok := a[0].(string)
	if !ok {
		return Undefined
	}
	n, ok := toNumber(a[1])
	if !ok {
		return Undefined
	}
	loc := time.UTC
	if len(a) == 3 {
		tz, ok := a[2].(string)
		if !ok {
			return Undefined
		}
		l, err := time.LoadLocation(tz)
		if err != nil {
			return Undefined
		}
		loc = l
	}
	ms := int64(math.Floor(toFloat(n)))
	t := time.UnixMilli(ms).In(loc)
	s, err := formatJoda(pattern, t)
	if err != nil {
		return Undefined
	}
	return s
}

// NewUUID is a random (version 4) UUID, as newuuid() returns.
func NewUUID() string { return fnNewUUID(&env{m: &Message{}}, nil).(string) }
