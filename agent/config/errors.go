package config

import (
	"errors"
	"fmt"
)

// The kinds of problem. Every *FieldError wraps exactly one of them, so
// callers can tell with errors.Is what kind of mistake the file holds.
var (
	ErrSyntax         = errors.New("invalid JSON")
	ErrTooLarge       = errors.New("config file too large")
	ErrUnknownField   = errors.New("unknown field")
	ErrDuplicateField = errors.New("duplicate field")
	ErrWrongType      = errors.New("wrong type")
	ErrInvalid        = errors.New("invalid value")
)

// FieldError is one problem with one field of the configuration.
type FieldError struct {
	// Path names the field as in the file: "mqtt.port",
	// "sensors.outputs[1].pin"; "" is the whole document.
	Path string
	// Problem says what is wrong, e.g. "want a number, got string".
	Problem string

	kind  error // one of the Err sentinels
	cause error // optional underlying error, e.g. from os.Stat
}

func (e *FieldError) Error() string {
	if e.kind == ErrUnknownField {
		if e.Problem != "" {
			return fmt.Sprintf("unknown field %q (%s)", e.Path, e.Problem)
		}
		return fmt.Sprintf("unknown field %q", e.Path)
	}
	p := e.Path
	if p == "" {
		p = "config"
	}
	return p + ": " + e.Problem
}

// Unwrap returns the kind sentinel and the underlying cause, if any, so that
// for a missing file both errors.Is(err, ErrInvalid) and
// errors.Is(err, fs.ErrNotExist) hold.
func (e *FieldError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// FieldErrors returns every *FieldError in err (which may be a join of
// several, or wrapped), in order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, u := range e.Unwrap() {
				walk(u)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// problems collects FieldErrors.
type problems []error

func (p *problems) add(kind error, path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Problem: fmt.Sprintf(format, args...), kind: kind})
}

func (p *problems) addCause(kind, cause error, path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Problem: fmt.Sprintf(format, args...), kind: kind, cause: cause})
}

func (p problems) err() error { return errors.Join(p...) }
