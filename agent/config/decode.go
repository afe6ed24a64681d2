package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// decoder decodes JSON into a Go value strictly, walking the token stream
// alongside the value's type so that every problem can name its full path.
// It recurses only along the Go type (a few levels), never along the input:
// values it does not decode are skipped iteratively, so deeply nested input
// cannot exhaust the stack.
type decoder struct {
	data []byte
	dec  *json.Decoder
	errs problems
	// valueStart is the offset just after the key of the value being
	// decoded (before its ':'), where a json.RawMessage's text starts.
	valueStart int64
}

// decodeStrict decodes data (one JSON object) into v, a pointer to a struct.
// Problems with individual fields are all collected; a syntax error stops
// decoding and is the only error returned.
func decodeStrict(data []byte, v any) error {
	d := &decoder{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	d.dec.UseNumber()
	tok, err := d.dec.Token()
	if err == io.EOF {
		return &FieldError{Problem: "empty file; want a JSON object", kind: ErrSyntax}
	}
	if err != nil {
		return d.syntax(err)
	}
	if err := d.value("", tok, reflect.ValueOf(v).Elem()); err != nil {
		return d.syntax(err)
	}
	// Anything but whitespace after the object is an error, whether or not
	// it would be valid JSON.
	off := d.dec.InputOffset()
	if _, err := d.dec.Token(); err != io.EOF {
		for off < int64(len(data)) && strings.IndexByte(" \t\r\n", data[off]) >= 0 {
			off++
		}
		line, col := d.position(off)
		return &FieldError{Problem: fmt.Sprintf("trailing data after the config object at line %d, column %d", line, col), kind: ErrSyntax}
	}
	return d.errs.err()
}

// syntax turns a tokenizer error into a FieldError with a line and column.
func (d *decoder) syntax(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		line, col := d.position(se.Offset)
		return &FieldError{Problem: fmt.Sprintf("invalid JSON at line %d, column %d: %v", line, col, se), kind: ErrSyntax, cause: se}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{Problem: "invalid JSON: unexpected end of file", kind: ErrSyntax, cause: io.ErrUnexpectedEOF}
	default:
		return &FieldError{Problem: "invalid JSON: " + err.Error(), kind: ErrSyntax, cause: err}
	}
}

// position converts a byte offset into a 1-based line and column.
func (d *decoder) position(off int64) (line, col int) {
	off = min(max(off, 0), int64(len(d.data)))
	before := d.data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// value decodes the JSON value that starts with tok into v. Field problems
// go to d.errs; the returned error is a tokenizer (syntax) error.
func (d *decoder) value(path string, tok json.Token, v reflect.Value) error {
	switch v.Kind() {
	case reflect.Pointer: // pointer to struct: null or an object
		if tok == nil {
			v.SetZero()
			return nil
		}
		if v.Type().Elem().Kind() != reflect.Struct { // *float64: null or the value
			p := reflect.New(v.Type().Elem())
			if err := d.value(path, tok, p.Elem()); err != nil {
				return err
			}
			v.Set(p)
			return nil
		}
		if !isDelim(tok, '{') {
			return d.wrongType(path, "an object or null", tok)
		}
		p := newDefault(v.Type().Elem())
		if err := d.object(path, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil

	case reflect.Struct:
		if !isDelim(tok, '{') {
			return d.wrongType(path, "an object", tok)
		}
		return d.object(path, v)

	case reflect.Slice:
		if v.Type() == reflect.TypeFor[json.RawMessage]() { // kept as it is, for its driver to decode
			if tok == nil {
				v.SetZero()
				return nil
			}
			if !isDelim(tok, '{') {
				return d.wrongType(path, "an object", tok)
			}
			if err := d.skip(tok); err != nil {
				return err
			}
			var raw bytes.Buffer
			if err := json.Compact(&raw, bytes.TrimLeft(d.data[d.valueStart:d.dec.InputOffset()], " \t\r\n:")); err != nil {
				return err
			}
			v.SetBytes(raw.Bytes())
			return nil
		}
		if tok == nil {
			v.SetZero()
			return nil
		}
		if !isDelim(tok, '[') {
			return d.wrongType(path, "an array", tok)
		}
		s := reflect.MakeSlice(v.Type(), 0, 0)
		for i := 0; d.dec.More(); i++ {
			tok, err := d.dec.Token()
			if err != nil {
				return err
			}
			e := newDefault(v.Type().Elem()).Elem()
			if err := d.value(path+"["+strconv.Itoa(i)+"]", tok, e); err != nil {
				return err
			}
			s = reflect.Append(s, e)
		}
		if _, err := d.dec.Token(); err != nil { // ']'
			return err
		}
		v.Set(s)
		return nil

	case reflect.Map: // map[string]T: an object with free keys
		if tok == nil {
			v.SetZero()
			return nil
		}
		if !isDelim(tok, '{') {
			return d.wrongType(path, "an object", tok)
		}
		m := reflect.MakeMap(v.Type())
		for d.dec.More() {
			kt, err := d.dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			d.valueStart = d.dec.InputOffset()
			vt, err := d.dec.Token()
			if err != nil {
				return err
			}
			kp := path + "." + key
			if m.MapIndex(reflect.ValueOf(key)).IsValid() {
				d.errs.add(ErrDuplicateField, kp, "appears more than once")
				if err := d.skip(vt); err != nil {
					return err
				}
				continue
			}
			e := newDefault(v.Type().Elem()).Elem()
			if err := d.value(kp, vt, e); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(key), e)
		}
		if _, err := d.dec.Token(); err != nil { // '}'
			return err
		}
		v.Set(m)
		return nil

	case reflect.String:
		s, ok := tok.(string)
		if !ok {
			return d.wrongType(path, "a string", tok)
		}
		v.SetString(s)
		return nil

	case reflect.Bool:
		b, ok := tok.(bool)
		if !ok {
			return d.wrongType(path, "true or false", tok)
		}
		v.SetBool(b)
		return nil

	case reflect.Int, reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return d.wrongType(path, "a number", tok)
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			// Accept an integral value written as a float (1e6, 8883.0).
			f, ferr := strconv.ParseFloat(string(n), 64)
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
				d.errs.add(ErrWrongType, path, "want an integer, got %s", n)
				return nil
			}
			i = int64(f)
		}
		if v.OverflowInt(i) {
			d.errs.add(ErrWrongType, path, "want an integer, got %s (out of range)", n)
			return nil
		}
		v.SetInt(i)
		return nil

	case reflect.Uint32: // TPMHandle: a number, or a string in hex ("0x81000010") or decimal
		var s string
		switch t := tok.(type) {
		case json.Number:
			s = string(t)
		case string:
			s = t
		default:
			return d.wrongType(path, `a number or a string such as "0x81000010"`, tok)
		}
		n, err := strconv.ParseUint(s, 0, 32)
		if err != nil || strings.Contains(s, "_") {
			d.errs.add(ErrWrongType, path, "want a 32-bit unsigned integer such as \"0x81000010\", got %q", s)
			return nil
		}
		v.SetUint(n)
		return nil

	case reflect.Float64:
		n, ok := tok.(json.Number)
		if !ok {
			return d.wrongType(path, "a number", tok)
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			d.errs.add(ErrWrongType, path, "want a number, got %s (out of range)", n)
			return nil
		}
		v.SetFloat(f)
		return nil
	}
	// Only reachable if Config gains a field of a kind handled nowhere above.
	d.errs.add(ErrWrongType, path, "internal error: cannot decode into %s", v.Type())
	return d.skip(tok)
}

// object decodes the members of an object whose '{' has been read into the
// struct v, matching keys to json tags exactly (case-sensitively).
func (d *decoder) object(path string, v reflect.Value) error {
	seen := make(map[string]bool)
	for d.dec.More() {
		kt, err := d.dec.Token()
		if err != nil {
			return err
		}
		key, ok := kt.(string)
		if !ok { // the tokenizer guarantees a string key; be safe anyway
			return fmt.Errorf("object key is %T", kt)
		}
		fp := key
		if path != "" {
			fp = path + "." + key
		}
		d.valueStart = d.dec.InputOffset()
		vt, err := d.dec.Token()
		if err != nil {
			return err
		}
		f, hint := field(v, key)
		switch {
		case !f.IsValid():
			d.errs.add(ErrUnknownField, fp, "%s", hint)
			err = d.skip(vt)
		case seen[key]:
			d.errs.add(ErrDuplicateField, fp, "appears more than once")
			err = d.skip(vt)
		default:
			seen[key] = true
			err = d.value(fp, vt, f)
		}
		if err != nil {
			return err
		}
	}
	_, err := d.dec.Token() // '}'
	return err
}

// field returns the field of struct v whose json name is key, or an invalid
// Value and, if key differs only in case from a field, a hint naming it.
func field(v reflect.Value, key string) (reflect.Value, string) {
	t := v.Type()
	hint := ""
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == key {
			return v.Field(i), ""
		}
		if strings.EqualFold(name, key) {
			hint = fmt.Sprintf("did you mean %q?", name)
		}
	}
	return reflect.Value{}, hint
}

// wrongType records that the value at path is not what its field needs and
// skips the value.
func (d *decoder) wrongType(path, want string, tok json.Token) error {
	d.errs.add(ErrWrongType, path, "want %s, got %s", want, kindOf(tok))
	return d.skip(tok)
}

// skip consumes the rest of a value that starts with tok, iteratively.
func (d *decoder) skip(tok json.Token) error {
	if !isDelim(tok, '{') && !isDelim(tok, '[') {
		return nil
	}
	for depth := 1; depth > 0; {
		t, err := d.dec.Token()
		if err != nil {
			return err
		}
		if dl, ok := t.(json.Delim); ok {
			if dl == '{' || dl == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}

func isDelim(tok json.Token, c byte) bool {
	d, ok := tok.(json.Delim)
	return ok && byte(d) == c
}

// kindOf names a token's JSON type for error messages.
func kindOf(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case json.Delim:
		if t == '{' {
			return "object"
		}
		return "array"
	}
	return fmt.Sprintf("%T", tok)
}

// newDefault returns a pointer to a new value of type t holding the defaults
// an object of that type starts from when it appears in the file.
func newDefault(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	switch t {
	case reflect.TypeFor[Input]():
		p.Elem().Set(reflect.ValueOf(defaultInput()))
	case reflect.TypeFor[BME280]():
		p.Elem().Set(reflect.ValueOf(defaultBME280()))
	case reflect.TypeFor[Part]():
		p.Elem().Set(reflect.ValueOf(defaultPart()))
	}
	return p
}
