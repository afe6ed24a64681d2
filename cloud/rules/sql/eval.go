package sql

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Message is what a rule evaluates: one MQTT message and where it came from.
type Message struct {
	// Topic is the message's topic; for Basic Ingest, without its
	// $aws/rules/<rule>/ prefix, as topic() returns it.
	Topic     string
	Payload   []byte
	ClientID  string // "" when it did not come over MQTT: clientid() is then "n/a"
	Principal string // the certificate id, or the access key id of a REST publish
	Time      time.Time
	// NewUUID, if set, makes newuuid()'s value (tests); nil means random.
	NewUUID func() string

	// The payload decoded once for every statement and template that
	// reads this message (a Message is used by one goroutine at a time).
	doc     any
	decErr  bool
	decoded bool
}

// env is one evaluation: the message and its payload decoded once.
type env struct {
	m      *Message
	doc    any // the decoded payload, rawBytes if it is not JSON
	decErr bool
}

func newEnv(m *Message) *env {
	if !m.decoded {
		if v, err := decodeJSON(m.Payload); err == nil {
			m.doc = v
		} else {
			m.doc, m.decErr = rawBytes(m.Payload), true
		}
		m.decoded = true
	}
	return &env{m: m, doc: m.doc, decErr: m.decErr}
}

// Result is the outcome of a statement on a message.
type Result struct {
	// Matched is false when the WHERE clause was not Boolean true: the
	// rule's actions do not run.
	Matched bool
	// Payload is the SELECT's result: a JSON object, or the raw payload
	// for SELECT * of a payload that is not JSON.
	Payload []byte
}

// Eval runs the statement on m. The FROM clause is not checked: the
// caller routes messages to the rules whose topic filter matches.
func (s *Statement) Eval(m *Message) (Result, error) {
	e := newEnv(m)
	if s.where != nil {
		if b, ok := s.where.eval(e).(bool); !ok || !b {
			return Result{}, nil
		}
	}
	if len(s.items) == 1 && s.items[0].star && e.decErr {
		return Result{Matched: true, Payload: append([]byte(nil), m.Payload...)}, nil
	}
	out := &object{}
	for i, it := range s.items {
		switch {
		case it.star:
			if o, ok := e.doc.(map[string]any); ok {
				for _, k := range sortedKeys(o) {
					out.set(k, o[k])
				}
			}
			continue
		case it.spread:
			if o, ok := it.x.eval(e).(map[string]any); ok {
				for _, k := range sortedKeys(o) {
					out.set(k, o[k])
				}
			}
			continue
		}
		v := it.x.eval(e)
		name := it.alias
		if name == "" {
			name = defaultName(it.x, i)
		}
		if b, ok := v.(rawBytes); ok {
			v = string(b)
		}
		out.set(name, v)
	}
	b, err := marshalValue(out)
	if err != nil {
		return Result{}, err
	}
	return Result{Matched: true, Payload: b}, nil
}

// Value evaluates expr, a parsed expression (see ParseExpr), on m: the
// ${...} of a substitution template.
func (x *Expr) Value(m *Message) any { return x.n.eval(newEnv(m)) }

// String is the value of a substitution: strings as they are, other
// values as JSON, Undefined as "".
func (x *Expr) String(m *Message) string { return toString(x.Value(m)) }

// Expr is one expression, as the ${...} of a substitution template holds.
type Expr struct{ n node }

// ParseExpr parses one expression.
func ParseExpr(src string) (*Expr, error) {
	if len(src) > MaxStatementBytes {
		return nil, errAt(0, "the expression is too long")
	}
	p := &parser{lex: lexer{src: src}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	n, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.expected("the end of the expression")
	}
	return &Expr{n: n}, nil
}

// defaultName is the result key of an item without AS: a path's last
// member, a function's name, else _<position>.
func defaultName(n node, i int) string {
	switch x := n.(type) {
	case *field:
		return x.name
	case *member:
		return x.name
	case *call:
		return x.name
	}
	return "_" + strconv.Itoa(i+1)
}

type node interface{ eval(e *env) any }

type lit struct{ v any }

func (l lit) eval(*env) any { return l.v }

// payloadNode is * as a function argument: the whole payload.
type payloadNode struct{}

func (payloadNode) eval(e *env) any { return e.doc }

type field struct{ name string }

func (f *field) eval(e *env) any { return getMember(e.doc, f.name) }

type member struct {
	x    node
	name string
}

func (m *member) eval(e *env) any { return getMember(m.x.eval(e), m.name) }

func getMember(v any, name string) any {
	o, ok := v.(map[string]any)
	if !ok {
		return Undefined
	}
	if x, ok := o[name]; ok {
		return x
	}
	return Undefined
}

type index struct{ x, i node }

func (n *index) eval(e *env) any {
	a, ok := n.x.eval(e).([]any)
	if !ok {
		return Undefined
	}
	i, ok := n.i.eval(e).(int64)
	if !ok || i < 0 || i >= int64(len(a)) {
		return Undefined
	}
	return a[i]
}

type arrayNode struct{ elems []node }

func (a *arrayNode) eval(e *env) any {
	out := make([]any, len(a.elems))
	for i, x := range a.elems {
		out[i] = x.eval(e)
	}
	return out
}

type objectNode struct {
	keys []string
	vals []node
}

func (o *objectNode) eval(e *env) any {
	out := make(map[string]any, len(o.keys))
	for i, k := range o.keys {
		if v := o.vals[i].eval(e); !IsUndefined(v) {
			out[k] = v
		}
	}
	return out
}

// toBool is a logical operand: Boolean, or a string "true"/"false" in any
// case; ok is false for anything else.
func toBool(v any) (b, ok bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		switch strings.ToLower(x) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

type logical struct {
	or   bool
	l, r node
}

// eval: AND and OR of two Booleans; any other operand makes Undefined,
// except that false AND x is false and true OR x is true.
func (n *logical) eval(e *env) any {
	l, lok := toBool(n.l.eval(e))
	if lok && l == n.or {
		return l
	}
	r, rok := toBool(n.r.eval(e))
	if rok && r == n.or {
		return r
	}
	if !lok || !rok {
		return Undefined
	}
	return r
}

type notExpr struct{ x node }

func (n *notExpr) eval(e *env) any {
	b, ok := toBool(n.x.eval(e))
	if !ok {
		return Undefined
	}
	return !b
}

type isExpr struct {
	x              node
	not, undefined bool
}

func (n *isExpr) eval(e *env) any {
	v := n.x.eval(e)
	var is bool
	if n.undefined {
		is = IsUndefined(v)
	} else {
		is = v == nil
	}
	if n.not {
		// x IS NOT NULL holds for a value that exists and is not null.
		if !n.undefined {
			return !is && !IsUndefined(v)
		}
		return !is
	}
	return is
}

type binary struct {
	op   string
	l, r node
}

func (n *binary) eval(e *env) any {
	l, r := n.l.eval(e), n.r.eval(e)
	if IsUndefined(l) || IsUndefined(r) {
		return Undefined
	}
	switch n.op {
	case "=", "<>":
		eq, ok := equal(l, r)
		if !ok {
			return Undefined
		}
		return eq == (n.op == "=")
	case "<", "<=", ">", ">=":
		c, ok := compare(l, r)
		if !ok {
			return Undefined
		}
		switch n.op {
		case "<":
			return c < 0
		case "<=":
			return c <= 0
		case ">":
			return c > 0
		}
		return c >= 0
	case "+":
		if ls, ok := l.(string); ok {
			if rs, ok := r.(string); ok {
				return ls + rs
			}
		}
	}
	return arith(n.op, l, r)
}

// arith applies + - * / % to numbers (numeric strings are converted):
// Int with Int is Int, anything with a Decimal is Decimal.
func arith(op string, l, r any) any {
	ln, ok1 := toNumber(l)
	rn, ok2 := toNumber(r)
	if !ok1 || !ok2 {
		return Undefined
	}
	li, lint := ln.(int64)
	ri, rint := rn.(int64)
	if lint && rint {
		switch op {
		case "+":
			return li + ri
		case "-":
			return li - ri
		case "*":
			return li * ri
		case "/":
			if ri == 0 {
				return Undefined
			}
			return li / ri
		case "%":
			if ri == 0 {
				return Undefined
			}
			return li % ri
		}
	}
	lf, rf := toFloat(ln), toFloat(rn)
	var v float64
	switch op {
	case "+":
		v = lf + rf
	case "-":
		v = lf - rf
	case "*":
		v = lf * rf
	case "/":
		if rf == 0 {
			return Undefined
		}
		v = lf / rf
	case "%":
		if rf == 0 {
			return Undefined
		}
		v = math.Mod(lf, rf)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Undefined
	}
	return v
}

// equal compares two defined values: numbers by value (a numeric string
// equals its number), strings, Booleans, Null with Null, arrays and
// objects member by member. Values of different types are not equal.
func equal(l, r any) (bool, bool) {
	if ln, ok := toNumber(l); ok {
		if rn, ok := toNumber(r); ok {
			_, ls := l.(string)
			_, rs := r.(string)
			if !(ls && rs) {
				return toFloat(ln) == toFloat(rn), true
			}
		}
	}
	switch x := l.(type) {
	case nil:
		return r == nil, true
	case bool:
		y, ok := r.(bool)
		return ok && x == y, true
	case string:
		y, ok := r.(string)
		return ok && x == y, true
	case []any:
		y, ok := r.([]any)
		if !ok || len(x) != len(y) {
			return false, true
		}
		for i := range x {
			if eq, ok := equal(x[i], y[i]); !ok || !eq {
				return false, true
			}
		}
		return true, true
	case map[string]any:
		y, ok := r.(map[string]any)
		if !ok || len(x) != len(y) {
			return false, true
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok {
				return false, true
			}
			if eq, ok := equal(v, w); !ok || !eq {
				return false, true
			}
		}
		return true, true
	}
	return false, true
}

// compare orders numbers (numeric strings included) and, failing that,
// two strings; other pairs have no order.
func compare(l, r any) (int, bool) {
	if ln, ok := toNumber(l); ok {
		if rn, ok := toNumber(r); ok {
			a, b := toFloat(ln), toFloat(rn)
			switch {
			case a < b:
				return -1, true
			case a > b:
				return 1, true
			}
			return 0, true
		}
	}
	ls, ok1 := l.(string)
	rs, ok2 := r.(string)
	if ok1 && ok2 {
		return strings.Compare(ls, rs), true
	}
	return 0, false
}

type caseNode struct {
	subject node // nil for CASE WHEN cond THEN ...
	whens   [][2]node
	els     node
}

func (c *caseNode) eval(e *env) any {
	var subject any
	if c.subject != nil {
		subject = c.subject.eval(e)
	}
	for _, w := range c.whens {
		v := w[0].eval(e)
		if c.subject != nil {
			if IsUndefined(subject) || IsUndefined(v) {
				continue
			}
			if eq, ok := equal(subject, v); ok && eq {
				return w[1].eval(e)
			}
			continue
		}
		if b, ok := v.(bool); ok && b {
			return w[1].eval(e)
		}
	}
	if c.els != nil {
		return c.els.eval(e)
	}
	return Undefined
}

type call struct {
	name string
	f    function
	args []node
}

func (c *call) eval(e *env) any {
	args := make([]any, len(c.args))
	for i, a := range c.args {
		args[i] = a.eval(e)
	}
	return c.f.fn(e, args)
}
