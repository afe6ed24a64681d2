package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrMalformed: the document is not a valid IoT policy (AWS answers
// MalformedPolicyException).
var ErrMalformed = errors.New("policy: malformed policy document")

// MaxDocumentChars is AWS's limit on a policy document: 2048 characters,
// whitespace not counted.
const MaxDocumentChars = 2048

// Policy language versions. Variables are substituted only in 2012-10-17
// documents; a document without Version is 2008-10-17, as in IAM.
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17"
)

// Decision is the result of an evaluation.
type Decision int

const (
	// DefaultDeny: no statement allowed the request.
	DefaultDeny Decision = iota
	// Allow: an Allow statement matched and no Deny did.
	Allow
	// Deny: an explicit Deny statement matched.
	Deny
)

func (d Decision) String() string {
	switch d {
	case Allow:
		return "Allow"
	case Deny:
		return "Deny"
	}
	return "DefaultDeny"
}

// Request is one authorization question.
type Request struct {
	Action   string // e.g. "iot:Publish"
	Resource string // the full ARN, e.g. "arn:aws:iot:us-east-1:123456789012:topic/a/b"
	Vars     Vars
}

// Document is a parsed, validated policy document. It is immutable and safe
// for concurrent use.
type Document struct {
	version    string
	statements []statement
}

// Version is the document's policy language version.
func (d *Document) Version() string { return d.version }

type statement struct {
	deny        bool
	notAction   bool
	actions     []pattern
	notResource bool
	resources   []pattern
	conds       []condition
}

type condition struct {
	op       string // base operator, e.g. "StringLike"
	set      string // "", "ForAllValues" or "ForAnyValue"
	ifExists bool
	key      string
	values   []pattern // string operators
	raw      []string  // the values as written
	nums     []float64 // Numeric*
	prefixes []netip.Prefix
}

// Operators and whether each is negated.
var operators = map[string]bool{
	"StringEquals": false, "StringNotEquals": true,
	"StringEqualsIgnoreCase": false, "StringNotEqualsIgnoreCase": true,
	"StringLike": false, "StringNotLike": true,
	"ArnEquals": false, "ArnNotEquals": true, "ArnLike": false, "ArnNotLike": true,
	"Bool": false, "Null": false,
	"NumericEquals": false, "NumericNotEquals": true,
	"NumericLessThan": false, "NumericLessThanEquals": false,
	"NumericGreaterThan": false, "NumericGreaterThanEquals": false,
	"IpAddress": false, "NotIpAddress": true,
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrMalformed)
}

// Parse parses and validates a policy document. Every problem is an error
// wrapping ErrMalformed.
func Parse(text string) (*Document, error) {
	if !utf8.ValidString(text) {
		return nil, malformed("the policy document is not valid UTF-8")
	}
	n := 0
	for _, r := range text {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	if n > MaxDocumentChars {
		return nil, malformed("the policy document has %d characters without whitespace; the limit is %d", n, MaxDocumentChars)
	}
	var top map[string]json.RawMessage
	if err := strictUnmarshal([]byte(text), &top); err != nil || top == nil {
		return nil, malformed("the policy document is not a JSON object")
	}
	d := &Document{version: Version2008}
	for k, v := range top {
		switch k {
		case "Version":
			if err := json.Unmarshal(v, &d.version); err != nil || (d.version != Version2012 && d.version != Version2008) {
				return nil, malformed("Version must be %q or %q", Version2012, Version2008)
			}
		case "Id":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, malformed("Id must be a string")
			}
		case "Statement":
		default:
			return nil, malformed("unsupported element %q", k)
		}
	}
	raw, ok := top["Statement"]
	if !ok {
		return nil, malformed("the policy document has no Statement")
	}
	var list []json.RawMessage
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, malformed("Statement must be an object or an array of objects")
		}
	} else {
		list = []json.RawMessage{raw}
	}
	if len(list) == 0 {
		return nil, malformed("Statement is empty")
	}
	vars := d.version == Version2012
	for i, r := range list {
		st, err := parseStatement(r, vars)
		if err != nil {
			return nil, fmt.Errorf("statement %d: %w", i, err)
		}
		d.statements = append(d.statements, st)
	}
	return d, nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("trailing data")
	}
	return nil
}

func parseStatement(raw json.RawMessage, vars bool) (statement, error) {
	var st statement
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return st, malformed("a statement must be a JSON object")
	}
	for k := range m {
		switch k {
		case "Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition":
		default:
			return st, malformed("unsupported element %q", k)
		}
	}
	if sid, ok := m["Sid"]; ok {
		var s string
		if err := json.Unmarshal(sid, &s); err != nil {
			return st, malformed("Sid must be a string")
		}
	}
	var effect string
	if err := json.Unmarshal(m["Effect"], &effect); err != nil || (effect != "Allow" && effect != "Deny") {
		return st, malformed(`Effect must be "Allow" or "Deny"`)
	}
	st.deny = effect == "Deny"

	actKey, resKey := "Action", "Resource"
	if _, ok := m["NotAction"]; ok {
		actKey, st.notAction = "NotAction", true
	}
	if _, ok := m["NotResource"]; ok {
		resKey, st.notResource = "NotResource", true
	}
	_, a1 := m["Action"]
	_, a2 := m["NotAction"]
	if a1 == a2 {
		return st, malformed("a statement needs exactly one of Action and NotAction")
	}
	_, r1 := m["Resource"]
	_, r2 := m["NotResource"]
	if r1 == r2 {
		return st, malformed("a statement needs exactly one of Resource and NotResource")
	}
	actions, err := stringOrList(m[actKey], actKey)
	if err != nil {
		return st, err
	}
	for _, a := range actions {
		if a != "*" && !validAction(a) {
			return st, malformed("%s %q is not of the form service:action", actKey, a)
		}
		st.actions = append(st.actions, compilePattern(a, true, false))
	}
	resources, err := stringOrList(m[resKey], resKey)
	if err != nil {
		return st, err
	}
	for _, r := range resources {
		if r != "*" && !strings.HasPrefix(r, "arn:") {
			return st, malformed("%s %q is not an ARN", resKey, r)
		}
		st.resources = append(st.resources, compilePattern(r, true, vars))
	}
	if c, ok := m["Condition"]; ok {
		if st.conds, err = parseConditions(c, vars); err != nil {
			return st, err
		}
	}
	return st, nil
}

func validAction(a string) bool {
	svc, name, ok := strings.Cut(a, ":")
	if !ok || svc == "" || name == "" {
		return false
	}
	for _, r := range a {
		if !(r == ':' || r == '*' || r == '?' || r == '-' || r == '_' ||
			'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

func stringOrList(raw json.RawMessage, what string) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, malformed("%s must not be empty", what)
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		return nil, malformed("%s must be a string or a non-empty array of strings", what)
	}
	if slices.Contains(list, "") {
		return nil, malformed("%s must not contain an empty string", what)
	}
	return list, nil
}

// conditionValues reads a condition value: a string, bool or number, or an
// array of them.
func conditionValues(raw json.RawMessage) ([]string, bool) {
	scalar := func(r json.RawMessage) (string, bool) {
		var v any
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.UseNumber()
		if dec.Decode(&v) != nil {
			return "", false
		}
		switch x := v.(type) {
		case string:
			return x, true
		case bool:
			return strconv.FormatBool(x), true
		case json.Number:
			return x.String(), true
		}
		return "", false
	}
	if s, ok := scalar(raw); ok {
		return []string{s}, true
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil || len(list) == 0 {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, r := range list {
		s, ok := scalar(r)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func parseConditions(raw json.RawMessage, vars bool) ([]condition, error) {
	var ops map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ops); err != nil {
		return nil, malformed("Condition must map operators to objects of keys and values")
	}
	var out []condition
	for _, opName := range sortedKeys(ops) {
		c := condition{op: opName}
		if set, rest, ok := strings.Cut(c.op, ":"); ok {
			if set != "ForAllValues" && set != "ForAnyValue" {
				return nil, malformed("unknown condition set operator %q", set)
			}
			c.set, c.op = set, rest
		}
		if base, ok := strings.CutSuffix(c.op, "IfExists"); ok && c.op != "Null" {
			c.op, c.ifExists = base, true
		}
		if _, ok := operators[c.op]; !ok {
			return nil, malformed("unknown condition operator %q", opName)
		}
		if c.op == "Null" && (c.ifExists || c.set != "") {
			return nil, malformed("condition operator %q is not valid", opName)
		}
		keys := ops[opName]
		if len(keys) == 0 {
			return nil, malformed("condition operator %q has no keys", opName)
		}
		for _, key := range sortedKeys(keys) {
			k := c
			k.key = key
			vals, ok := conditionValues(keys[key])
			if !ok || key == "" {
				return nil, malformed("condition %s %q needs a string, bool or number, or an array of them", opName, key)
			}
			k.raw = vals
			if err := k.compile(vars); err != nil {
				return nil, err
			}
			out = append(out, k)
		}
	}
	return out, nil
}

func (c *condition) compile(vars bool) error {
	switch {
	case c.op == "Null" || c.op == "Bool":
		for _, v := range c.raw {
			if !strings.EqualFold(v, "true") && !strings.EqualFold(v, "false") {
				if c.op == "Null" || !strings.Contains(v, "${") {
					return malformed("condition %s %q: %q is not true or false", c.op, c.key, v)
				}
			}
			c.values = append(c.values, compilePattern(v, false, vars))
		}
	case strings.HasPrefix(c.op, "Numeric"):
		for _, v := range c.raw {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return malformed("condition %s %q: %q is not a number", c.op, c.key, v)
			}
			c.nums = append(c.nums, f)
		}
	case strings.HasSuffix(c.op, "IpAddress"):
		for _, v := range c.raw {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				a, aerr := netip.ParseAddr(v)
				if aerr != nil {
					return malformed("condition %s %q: %q is not an IP address or CIDR block", c.op, c.key, v)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			c.prefixes = append(c.prefixes, p.Masked())
		}
	default:
		wild := strings.HasSuffix(c.op, "Like") || strings.HasPrefix(c.op, "Arn")
		for _, v := range c.raw {
			c.values = append(c.values, compilePattern(v, wild, vars))
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Evaluate decides r against every document together: Deny if any
// statement that matches denies, else Allow if one allows, else DefaultDeny.
func Evaluate(docs []*Document, r Request) Decision {
	allowed := false
	for _, d := range docs {
		if d == nil {
			continue
		}
		for i := range d.statements {
			st := &d.statements[i]
			if !st.deny && allowed {
				continue // nothing more to learn from another Allow
			}
			if st.matches(&r) {
				if st.deny {
					return Deny
				}
				allowed = true
			}
		}
	}
	if allowed {
		return Allow
	}
	return DefaultDeny
}

func (st *statement) matches(r *Request) bool {
	hit := false
	for i := range st.actions {
		if st.actions[i].match(r.Action, nil, true) {
			hit = true
			break
		}
	}
	if hit == st.notAction {
		return false
	}
	hit = false
	for i := range st.resources {
		if st.resources[i].match(r.Resource, r.Vars, false) {
			hit = true
			break
		}
	}
	if hit == st.notResource {
		return false
	}
	for i := range st.conds {
		if !st.conds[i].eval(r.Vars) {
			return false
		}
	}
	return true
}

func (c *condition) eval(vars Vars) bool {
	vals, present := vars.lookup(c.key)
	if c.op == "Null" {
		for _, p := range c.values {
			// Null: "true" means the key must be absent.
			if p.match("true", vars, true) == !present {
				return true
			}
		}
		return false
	}
	if !present && c.ifExists {
		return true
	}
	negated := operators[c.op]
	switch c.set {
	case "ForAnyValue":
		for _, v := range vals {
			if c.one(v, vars) != negated {
				return true
			}
		}
		return false
	case "ForAllValues":
		for _, v := range vals {
			if c.one(v, vars) == negated {
				return false
			}
		}
		return true
	}
	if !present || len(vals) == 0 {
		return negated
	}
	if negated {
		for _, v := range vals {
			if c.one(v, vars) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		if c.one(v, vars) {
			return true
		}
	}
	return false
}

// one reports whether the request value v matches any of the condition's
// values under the positive form of the operator.
func (c *condition) one(v string, vars Vars) bool {
	switch {
	case strings.HasPrefix(c.op, "Numeric"):
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return false
		}
		for _, n := range c.nums {
			switch c.op {
			case "NumericEquals", "NumericNotEquals":
				if f == n {
					return true
				}
			case "NumericLessThan":
				if f < n {
					return true
				}
			case "NumericLessThanEquals":
				if f <= n {
					return true
				}
			case "NumericGreaterThan":
				if f > n {
					return true
				}
			case "NumericGreaterThanEquals":
				if f >= n {
					return true
				}
			}
		}
		return false
	case strings.HasSuffix(c.op, "IpAddress"):
		a, err := netip.ParseAddr(v)
		if err != nil {
			return false
		}
		for _, p := range c.prefixes {
			if p.Contains(a.Unmap()) || p.Contains(a) {
				return true
			}
		}
		return false
	}
	fold := c.op == "Bool" || strings.HasSuffix(c.op, "IgnoreCase")
	for i := range c.values {
		if c.values[i].match(v, vars, fold) {
			return true
		}
	}
	return false
}
