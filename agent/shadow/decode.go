package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrBadDocument is wrapped by every answer the client cannot read at all
// (not a JSON object). A document that is JSON never fails as a whole: a
// value Go cannot hold stays behind for the agent to refuse on its own.
var ErrBadDocument = errors.New("shadow: unreadable document")

// MaxDepth is how deep the client follows nested objects and arrays; a
// value below that is replaced by an Invalid. AWS allows 6 levels of keys
// under desired or reported (8 in some regions), so this is never reached
// by a document the shadow service accepted.
const MaxDepth = 32

// Invalid stands in a decoded document for a value the client did not
// keep, with the reason; the agent refuses it as it refuses any other
// value it cannot apply.
type Invalid struct {
	Reason string `json:"invalid"`
}

// DecodeObject decodes a JSON object as the client decodes every shadow
// document, leniently: numbers stay json.Number
// (so 1e400 or 2^64 are not errors: whoever reads the value decides
// whether it fits), and a value nested deeper than MaxDepth becomes an
// Invalid instead of failing the whole document (encoding/json fails any
// document nested deeper than 10,000 levels). Only text that is not a
// JSON object is an error.
func DecodeObject(p []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	var m map[string]any
	err := dec.Decode(&m)
	if err == nil {
		if _, err := dec.Token(); err != io.EOF {
			return nil, fmt.Errorf("%w: data after the JSON object", ErrBadDocument)
		}
		if m == nil {
			return nil, fmt.Errorf("%w: null, want a JSON object", ErrBadDocument)
		}
		return capDepth(m, 1), nil
	}
	// Too deep for encoding/json, or not JSON: the token reader tells.
	return decodeTokens(p)
}

// capDepth replaces what lies deeper than MaxDepth in a tree that
// encoding/json decoded, so that both decoders give the same tree.
func capDepth(m map[string]any, depth int) map[string]any {
	for k, v := range m {
		m[k] = capValue(v, depth)
	}
	return m
}

func capValue(v any, depth int) any {
	switch x := v.(type) {
	case map[string]any:
		if depth >= MaxDepth {
			return tooDeep()
		}
		return capDepth(x, depth+1)
	case []any:
		if depth >= MaxDepth {
			return tooDeep()
		}
		for i, e := range x {
			x[i] = capValue(e, depth+1)
		}
	}
	return v
}

func tooDeep() Invalid {
	return Invalid{Reason: fmt.Sprintf("nested deeper than %d levels", MaxDepth)}
}

// decodeTokens is DecodeObject's reader for documents that encoding/json
// refuses to decode whole: it reads token by token, which has no depth
// limit, and skips what lies deeper than MaxDepth.
func decodeTokens(p []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: want a JSON object", ErrBadDocument)
	}
	m, err := readObject(dec, 1)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrBadDocument)
	}
	return m, nil
}

// readObject reads the members of an object whose '{' has been read;
// depth counts the containers open, this one included.
func readObject(dec *json.Decoder, depth int) (map[string]any, error) {
	m := map[string]any{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if tok == json.Delim('}') {
			return m, nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("object key %v", tok)
		}
		if tok, err = dec.Token(); err != nil {
			return nil, err
		}
		if m[key], err = readValue(dec, tok, depth); err != nil {
			return nil, err
		}
	}
}

func readArray(dec *json.Decoder, depth int) ([]any, error) {
	a := []any{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if tok == json.Delim(']') {
			return a, nil
		}
		v, err := readValue(dec, tok, depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
	}
}

// readValue returns the value that starts with tok, inside depth open
// containers.
func readValue(dec *json.Decoder, tok json.Token, depth int) (any, error) {
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= MaxDepth {
		if err := skip(dec); err != nil {
			return nil, err
		}
		return tooDeep(), nil
	}
	switch d {
	case '{':
		return readObject(dec, depth+1)
	case '[':
		return readArray(dec, depth+1)
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// skip reads up to the end of the container whose opening delimiter has
// been read.
func skip(dec *json.Decoder) error {
	for open := 1; open > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			open++
		case json.Delim('}'), json.Delim(']'):
			open--
		}
	}
	return nil
}

// object returns m[key] when it is an object.
func object(m map[string]any, key string) map[string]any {
	o, _ := m[key].(map[string]any)
	return o
}

// integer returns m[key] when it is a whole number that fits an int64.
func integer(m map[string]any, key string) int64 {
	n, _ := m[key].(json.Number)
	i, _ := n.Int64()
	return i
}

// documentFrom reads a decoded get/accepted document.
func documentFrom(m map[string]any) Document {
	st := object(m, "state")
	return Document{
		State:     State{Desired: object(st, "desired"), Reported: object(st, "reported"), Delta: object(st, "delta")},
		Version:   integer(m, "version"),
		Timestamp: integer(m, "timestamp"),
	}
}

// parseDelta reads an update/delta document.
func parseDelta(p []byte) (Delta, error) {
	m, err := DecodeObject(p)
	if err != nil {
		return Delta{}, err
	}
	return Delta{State: object(m, "state"), Version: integer(m, "version")}, nil
}
