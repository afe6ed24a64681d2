package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// op is one operation of the REST table: its name, route, the input type
// In read from the request, the call, and how the service's errors become
// AWS's. Every operation goes through the same steps in handle: decode
// (path labels, query, headers, JSON body into In), validate (the check
// tags, then In's validate method if it has one), call, map errors,
// encode.
//
// In's fields say where they come from:
//
//	`uri:"thingName"`        a path label
//	`query:"force"`          a query parameter
//	`header:"x-amzn-principal"` a header
//	`json:"statusDetails"`   a member of the JSON body
//
// A path, query or header field is a string, a bool ("true" or "false"),
// an int64, or a pointer to one of them (nil when absent). A check tag
// names a validator from checks ("thing", "job", ...), applied to a
// non-empty value; path labels are always checked.
type op[In any] struct {
	name, family, method, path string
	// call does the work. It returns the response body: nil for "{}",
	// json.RawMessage as it is, anything else encoded as JSON.
	call func(s *Server, c *call, in *In) (any, error)
	// errs maps the service's errors to AWS's; nil leaves them as they
	// are (an *apiError passes through every mapper).
	errs func(in *In, err error) error
}

// validator is implemented by inputs with rules beyond their check tags.
type validator interface{ validate() error }

func (o op[In]) route() route {
	return newRoute(o.family, o.method, o.path, o.name, func(s *Server, c *call) error {
		var in In
		if err := bind(c, &in); err != nil {
			return err
		}
		if v, ok := any(&in).(validator); ok {
			if err := v.validate(); err != nil {
				return err
			}
		}
		out, err := o.call(s, c, &in)
		if err != nil {
			if o.errs != nil {
				err = o.errs(&in, err)
			}
			return err
		}
		switch b := out.(type) {
		case nil:
			return writeRaw(c.w, []byte("{}"))
		case json.RawMessage:
			return writeRaw(c.w, b)
		}
		return writeJSON(c.w, out)
	})
}

// checks are the validators a check tag names; each gets the field's wire
// name and value.
var checks = map[string]func(field, v string) error{
	"thing":    checkThingName,
	"job":      func(_, v string) error { return checkJobID(v) },
	"cert":     func(field, v string) error { return checkHexID(field, v) },
	"policy":   func(_, v string) error { return checkPolicyName(v) },
	"profile":  func(_, v string) error { return checkProfileName(v) },
	"template": func(_, v string) error { return checkTemplateName(v) },
}

// checkHexID is checkCertificateID for any field name.
func checkHexID(field, v string) error {
	if err := checkLen(v, field, 64, 64); err != nil {
		return err
	}
	if strings.Trim(v, "0123456789abcdefABCDEF") != "" {
		return validation(v, field, "Member must satisfy regular expression pattern: (0x)?[a-fA-F0-9]+")
	}
	return nil
}

// bind decodes the request into in (a pointer to a struct): the JSON body
// first, then the path, query and header fields, which the body cannot
// set, then the check tags.
func bind(c *call, in any) error {
	rv := reflect.ValueOf(in).Elem()
	if hasBody(rv.Type()) && len(bytes.TrimSpace(c.body)) > 0 {
		if err := json.Unmarshal(c.body, in); err != nil {
			return invalid("The request body is not a valid JSON object: %v", err)
		}
	}
	return bindFields(c, rv)
}

// hasBody reports whether a struct has body members: fields with a json
// tag, or embedded structs that have some.
func hasBody(rt reflect.Type) bool {
	for i := range rt.NumField() {
		f := rt.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if hasBody(f.Type) {
				return true
			}
			continue
		}
		if f.Tag.Get("uri") == "" && f.Tag.Get("query") == "" && f.Tag.Get("header") == "" && f.Tag.Get("json") != "" {
			return true
		}
	}
	return false
}

// bindFields sets the path, query and header fields of rv (and of the
// structs it embeds) and runs their checks.
func bindFields(c *call, rv reflect.Value) error {
	rt := rv.Type()
	for i := range rt.NumField() {
		f, fv := rt.Field(i), rv.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if err := bindFields(c, fv); err != nil {
				return err
			}
			continue
		}
		var name, raw string
		var present, label bool
		switch {
		case f.Tag.Get("uri") != "":
			name = f.Tag.Get("uri")
			raw, present, label = c.labels[name], true, true
		case f.Tag.Get("query") != "":
			name = f.Tag.Get("query")
			raw, present = c.query.Get(name), c.query.Has(name)
		case f.Tag.Get("header") != "":
			name = f.Tag.Get("header")
			raw = c.r.Header.Get(name)
			present = raw != ""
		default:
			continue
		}
		fv.SetZero()
		if present {
			if err := setField(fv, name, raw); err != nil {
				return err
			}
		}
		if check := f.Tag.Get("check"); check != "" && (label || raw != "") {
			if err := checks[check](name, raw); err != nil {
				return err
			}
		}
	}
	return nil
}

// setField parses raw into a string, bool or int64 field, or a pointer to one.
func setField(fv reflect.Value, name, raw string) error {
	if fv.Kind() == reflect.Pointer {
		p := reflect.New(fv.Type().Elem())
		if err := setField(p.Elem(), name, raw); err != nil {
			return err
		}
		fv.Set(p)
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		switch raw {
		case "true":
			fv.SetBool(true)
		case "false", "":
		default:
			return invalid("Value '%s' for '%s' must be true or false", truncate(raw, 64), name)
		}
	case reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return invalid("Value '%s' for '%s' is not an integer", truncate(raw, 64), name)
		}
		fv.SetInt(n)
	default:
		return errorf(http.StatusInternalServerError, "InternalFailureException", "field %s has an unsupported type %s", name, fv.Type())
	}
	return nil
}
