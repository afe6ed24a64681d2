package sql

import (
	"errors"
	"fmt"
	"strings"
)

// ErrParse is wrapped by every error Parse returns; the API answers it
// with AWS's SqlParseException.
var ErrParse = errors.New("sql parse error")

// ParseError says where in the statement parsing stopped, and why.
type ParseError struct {
	Pos int // byte offset
	Msg string
}

func (e *ParseError) Error() string { return fmt.Sprintf("Line 1:%d %s", e.Pos+1, e.Msg) }

// Unwrap makes errors.Is(err, ErrParse) hold.
func (e *ParseError) Unwrap() error { return ErrParse }

func errAt(pos int, msg string) *ParseError { return &ParseError{Pos: pos, Msg: msg} }

// MaxStatementBytes bounds a statement, as AWS's topic rule sql member is.
const MaxStatementBytes = 8192

// maxDepth bounds the nesting of expressions, so that a hostile statement
// cannot exhaust the stack.
const maxDepth = 200

// Statement is a parsed SQL statement.
type Statement struct {
	items []selectItem
	// Topic is the FROM clause's topic filter.
	Topic string
	where node
	src   string
}

// String is the statement as it was parsed.
func (s *Statement) String() string { return s.src }

type selectItem struct {
	x      node
	alias  string
	star   bool // SELECT *
	spread bool // SELECT x.*
}

// Parse parses one statement.
func Parse(src string) (*Statement, error) {
	if len(src) > MaxStatementBytes {
		return nil, errAt(0, fmt.Sprintf("the statement is %d bytes, more than %d", len(src), MaxStatementBytes))
	}
	p := &parser{lex: lexer{src: src}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	st, err := p.statement()
	if err != nil {
		return nil, err
	}
	st.src = src
	return st, nil
}

type parser struct {
	lex   lexer
	tok   token
	depth int
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) isKeyword(kw string) bool {
	return p.tok.kind == tIdent && strings.EqualFold(p.tok.text, kw)
}

func (p *parser) isOp(op string) bool { return p.tok.kind == tOp && p.tok.text == op }

func (p *parser) describe() string {
	switch p.tok.kind {
	case tEOF:
		return "end of statement"
	case tString:
		return fmt.Sprintf("string %q", p.tok.text)
	}
	return fmt.Sprintf("'%s'", p.tok.text)
}

func (p *parser) expected(what string) error {
	return errAt(p.tok.pos, fmt.Sprintf("expected %s, found %s", what, p.describe()))
}

func (p *parser) expectKeyword(kw string) error {
	if !p.isKeyword(kw) {
		return p.expected(kw)
	}
	return p.advance()
}

func (p *parser) expectOp(op string) error {
	if !p.isOp(op) {
		return p.expected("'" + op + "'")
	}
	return p.advance()
}

func (p *parser) statement() (*Statement, error) {
	st := &Statement{}
	if err := p.expectKeyword("SELECT"); err != nil {
		return nil, err
	}
	for {
		it, err := p.selectItem()
		if err != nil {
			return nil, err
		}
		st.items = append(st.items, it)
		if !p.isOp(",") {
			break
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	if !p.isKeyword("FROM") {
		return nil, p.expected("',' or FROM")
	}
	// The topic filter is read from the raw text: it is not made of tokens.
	topic, pos, err := p.lex.rawWord()
	if err != nil {
		return nil, err
	}
	if topic == "" {
		return nil, errAt(pos, "expected a topic filter after FROM")
	}
	if err := checkFilter(topic); err != nil {
		return nil, errAt(pos, fmt.Sprintf("topic filter %q: %v", topic, err))
	}
	st.Topic = topic
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.isKeyword("WHERE") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		if st.where, err = p.expr(); err != nil {
			return nil, err
		}
	}
	if p.isOp(";") {
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	if p.tok.kind != tEOF {
		return nil, p.expected("WHERE or the end of the statement")
	}
	return st, nil
}

// checkFilter validates an MQTT topic filter: # only last and alone in
// its level, + alone in its level.
func checkFilter(f string) error {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return errors.New("# must be the last level")
		case l != "#" && strings.Contains(l, "#"), l != "+" && strings.Contains(l, "+"):
			return errors.New("a wildcard must fill its level")
		}
	}
	return nil
}

func (p *parser) selectItem() (selectItem, error) {
	if p.isOp("*") {
		return selectItem{star: true}, p.advance()
	}
	x, err := p.expr()
	if err != nil {
		return selectItem{}, err
	}
	it := selectItem{x: x}
	// x.* merges an object's members into the result.
	if p.isOp(".") {
		if err := p.advance(); err != nil {
			return it, err
		}
		if err := p.expectOp("*"); err != nil {
			return it, err
		}
		it.spread = true
		return it, nil
	}
	if p.isKeyword("AS") {
		if err := p.advance(); err != nil {
			return it, err
		}
		if p.tok.kind != tIdent && p.tok.kind != tString {
			return it, p.expected("a name after AS")
		}
		it.alias = p.tok.text
		if err := p.advance(); err != nil {
			return it, err
		}
		for p.isOp(".") { // AS a.b names a nested member
			if err := p.advance(); err != nil {
				return it, err
			}
			if p.tok.kind != tIdent {
				return it, p.expected("a name after '.'")
			}
			it.alias += "." + p.tok.text
			if err := p.advance(); err != nil {
				return it, err
			}
		}
	}
	return it, nil
}

// Expressions, lowest precedence first: OR, AND, NOT, comparison and IS,
// + and -, * / and %, unary minus, postfix . and [].

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return errAt(p.tok.pos, "the expression is nested too deeply")
	}
	return nil
}

func (p *parser) expr() (node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	return p.or()
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.isKeyword("OR") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &logical{or: true, l: l, r: r}
	}
	return l, nil
}

func (p *parser) and() (node, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.isKeyword("AND") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &logical{l: l, r: r}
	}
	return l, nil
}

func (p *parser) not() (node, error) {
	if p.isKeyword("NOT") {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer func() { p.depth-- }()
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &notExpr{x: x}, nil
	}
	return p.comparison()
}

var comparisons = map[string]bool{"=": true, "<>": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true}

func (p *parser) comparison() (node, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.tok.kind == tOp && comparisons[p.tok.text]:
			op := p.tok.text
			if op == "!=" {
				op = "<>"
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
			r, err := p.additive()
			if err != nil {
				return nil, err
			}
			l = &binary{op: op, l: l, r: r}
		case p.isKeyword("IS"):
			if err := p.advance(); err != nil {
				return nil, err
			}
			n := &isExpr{x: l}
			if p.isKeyword("NOT") {
				n.not = true
				if err := p.advance(); err != nil {
					return nil, err
				}
			}
			switch {
			case p.isKeyword("NULL"):
			case p.isKeyword("UNDEFINED"):
				n.undefined = true
			default:
				return nil, p.expected("NULL or UNDEFINED after IS")
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
			l = n
		default:
			return l, nil
		}
	}
}

func (p *parser) additive() (node, error) {
	l, err := p.multiplicative()
	if err != nil {
		return nil, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.tok.text
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.multiplicative()
		if err != nil {
			return nil, err
		}
		l = &binary{op: op, l: l, r: r}
	}
	return l, nil
}

func (p *parser) multiplicative() (node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.isOp("*") || p.isOp("/") || p.isOp("%") {
		op := p.tok.text
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &binary{op: op, l: l, r: r}
	}
	return l, nil
}

func (p *parser) unary() (node, error) {
	if p.isOp("-") || p.isOp("+") {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer func() { p.depth-- }()
		neg := p.tok.text == "-"
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if !neg {
			return &binary{op: "+", l: lit{int64(0)}, r: x}, nil
		}
		if l, ok := x.(lit); ok {
			switch v := l.v.(type) {
			case int64:
				return lit{-v}, nil
			case float64:
				return lit{-v}, nil
			}
		}
		return &binary{op: "-", l: lit{int64(0)}, r: x}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (node, error) {
	x, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isOp("."):
			// Look past the dot: x.* belongs to the SELECT item.
			save, saveTok := p.lex.pos, p.tok
			if err := p.advance(); err != nil {
				return nil, err
			}
			if p.isOp("*") {
				p.lex.pos, p.tok = save, saveTok
				return x, nil
			}
			if p.tok.kind != tIdent {
				return nil, p.expected("a member name after '.'")
			}
			x = &member{x: x, name: p.tok.text}
			if err := p.advance(); err != nil {
				return nil, err
			}
		case p.isOp("["):
			if err := p.advance(); err != nil {
				return nil, err
			}
			i, err := p.expr()
			if err != nil {
				return nil, err
			}
			if err := p.expectOp("]"); err != nil {
				return nil, err
			}
			x = &index{x: x, i: i}
		default:
			return x, nil
		}
	}
}

func (p *parser) primary() (node, error) {
	t := p.tok
	switch t.kind {
	case tNumber:
		v := number(t.text)
		if IsUndefined(v) {
			return nil, errAt(t.pos, fmt.Sprintf("bad number %s", t.text))
		}
		if strings.ContainsAny(t.text, ".eE") { // a literal written as a decimal stays one
			v = toFloat(v)
		}
		return lit{v}, p.advance()
	case tString:
		return lit{t.text}, p.advance()
	case tIdent:
		switch strings.ToUpper(t.text) {
		case "TRUE":
			return lit{true}, p.advance()
		case "FALSE":
			return lit{false}, p.advance()
		case "NULL":
			return lit{nil}, p.advance()
		case "CASE":
			return p.caseExpr()
		case "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "AS", "IS", "WHEN", "THEN", "ELSE", "END":
			return nil, p.expected("an expression")
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.isOp("(") {
			return p.call(t)
		}
		return &field{name: t.text}, nil
	case tOp:
		switch t.text {
		case "(":
			if err := p.advance(); err != nil {
				return nil, err
			}
			x, err := p.expr()
			if err != nil {
				return nil, err
			}
			return x, p.expectOp(")")
		case "[":
			return p.arrayLit()
		case "{":
			return p.objectLit()
		}
	}
	return nil, p.expected("an expression")
}

func (p *parser) call(name token) (node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if err := p.advance(); err != nil { // (
		return nil, err
	}
	fname := strings.ToLower(name.text)
	f, ok := functions[fname]
	if !ok {
		return nil, errAt(name.pos, fmt.Sprintf("unknown function %s", name.text))
	}
	c := &call{name: fname, f: f}
	if fname == "cast" {
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		if err := p.expectKeyword("AS"); err != nil {
			return nil, err
		}
		if p.tok.kind != tIdent {
			return nil, p.expected("a type after AS")
		}
		typ := strings.ToLower(p.tok.text)
		switch typ {
		case "int", "decimal", "string", "boolean", "bool":
		default:
			return nil, errAt(p.tok.pos, fmt.Sprintf("cannot cast to %s: the types are Int, Decimal, String and Boolean", p.tok.text))
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		c.args = []node{x, lit{typ}}
		return c, p.expectOp(")")
	}
	for !p.isOp(")") {
		if len(c.args) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, err
			}
		}
		if p.isOp("*") {
			c.args = append(c.args, payloadNode{})
			if err := p.advance(); err != nil {
				return nil, err
			}
			continue
		}
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.args = append(c.args, x)
	}
	if len(c.args) < f.min || f.max >= 0 && len(c.args) > f.max {
		return nil, errAt(name.pos, fmt.Sprintf("%s takes %s, not %d", name.text, f.arity(), len(c.args)))
	}
	return c, p.advance()
}

func (p *parser) caseExpr() (node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if err := p.advance(); err != nil {
		return nil, err
	}
	c := &caseNode{}
	if !p.isKeyword("WHEN") {
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.subject = x
	}
	for p.isKeyword("WHEN") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		w, err := p.expr()
		if err != nil {
			return nil, err
		}
		if err := p.expectKeyword("THEN"); err != nil {
			return nil, err
		}
		t, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.whens = append(c.whens, [2]node{w, t})
	}
	if len(c.whens) == 0 {
		return nil, p.expected("WHEN")
	}
	if p.isKeyword("ELSE") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.els = e
	}
	return c, p.expectKeyword("END")
}

func (p *parser) arrayLit() (node, error) {
	if err := p.advance(); err != nil {
		return nil, err
	}
	a := &arrayNode{}
	for !p.isOp("]") {
		if len(a.elems) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, err
			}
		}
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		a.elems = append(a.elems, x)
	}
	return a, p.advance()
}

func (p *parser) objectLit() (node, error) {
	if err := p.advance(); err != nil {
		return nil, err
	}
	o := &objectNode{}
	for !p.isOp("}") {
		if len(o.keys) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, err
			}
		}
		if p.tok.kind != tString && p.tok.kind != tIdent {
			return nil, p.expected("a member name")
		}
		k := p.tok.text
		if err := p.advance(); err != nil {
			return nil, err
		}
		if err := p.expectOp(":"); err != nil {
			return nil, err
		}
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		o.keys, o.vals = append(o.keys, k), append(o.vals, x)
	}
	return o, p.advance()
}
