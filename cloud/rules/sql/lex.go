package sql

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tOp // punctuation and operators: + - * / % = <> != < <= > >= ( ) , . [ ] { } : ;
)

type token struct {
	kind tokKind
	text string // identifier, operator, the number's text, the string's value
	pos  int    // byte offset in the statement
}

// lexer produces tokens on demand, so that the parser can read FROM's
// topic filter, which is not made of tokens, from the raw text.
type lexer struct {
	src string
	pos int
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= utf8.RuneSelf
}

func isIdentPart(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (l *lexer) skipSpace() {
	for l.pos < len(l.src) {
		switch l.src[l.pos] {
		case ' ', '\t', '\n', '\r', '\f':
			l.pos++
		default:
			return
		}
	}
}

func (l *lexer) next() (token, error) {
	l.skipSpace()
	start := l.pos
	if l.pos >= len(l.src) {
		return token{kind: tEOF, pos: start}, nil
	}
	c := l.src[l.pos]
	switch {
	case isIdentStart(c):
		for l.pos < len(l.src) && isIdentPart(l.src[l.pos]) {
			l.pos++
		}
		return token{kind: tIdent, text: l.src[start:l.pos], pos: start}, nil
	case c == '`':
		end := strings.IndexByte(l.src[l.pos+1:], '`')
		if end < 0 {
			return token{}, errAt(start, "unterminated quoted identifier")
		}
		l.pos += end + 2
		return token{kind: tIdent, text: l.src[start+1 : l.pos-1], pos: start}, nil
	case isDigit(c) || c == '.' && l.pos+1 < len(l.src) && isDigit(l.src[l.pos+1]):
		for l.pos < len(l.src) && isDigit(l.src[l.pos]) {
			l.pos++
		}
		if l.pos < len(l.src) && l.src[l.pos] == '.' && l.pos+1 < len(l.src) && isDigit(l.src[l.pos+1]) {
			l.pos++
			for l.pos < len(l.src) && isDigit(l.src[l.pos]) {
				l.pos++
			}
		}
		if l.pos < len(l.src) && (l.src[l.pos] == 'e' || l.src[l.pos] == 'E') {
			p := l.pos + 1
			if p < len(l.src) && (l.src[p] == '+' || l.src[p] == '-') {
				p++
			}
			if p < len(l.src) && isDigit(l.src[p]) {
				for p < len(l.src) && isDigit(l.src[p]) {
					p++
				}
				l.pos = p
			}
		}
		return token{kind: tNumber, text: l.src[start:l.pos], pos: start}, nil
	case c == '\'' || c == '"':
		s, err := l.quoted(c)
		if err != nil {
			return token{}, err
		}
		return token{kind: tString, text: s, pos: start}, nil
	}
	for _, op := range []string{"<>", "!=", "<=", ">=", "+", "-", "*", "/", "%", "=", "<", ">", "(", ")", ",", ".", "[", "]", "{", "}", ":", ";"} {
		if strings.HasPrefix(l.src[l.pos:], op) {
			l.pos += len(op)
			return token{kind: tOp, text: op, pos: start}, nil
		}
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.pos:])
	return token{}, errAt(start, fmt.Sprintf("unexpected character %q", r))
}

// quoted reads a string literal in quote q: a doubled quote or a
// backslash escapes the next character.
func (l *lexer) quoted(q byte) (string, error) {
	start := l.pos
	l.pos++
	var b strings.Builder
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == q && l.pos+1 < len(l.src) && l.src[l.pos+1] == q:
			b.WriteByte(q)
			l.pos += 2
		case c == q:
			l.pos++
			return b.String(), nil
		case c == '\\' && l.pos+1 < len(l.src):
			e := l.src[l.pos+1]
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteByte(e)
			}
			l.pos += 2
		default:
			b.WriteByte(c)
			l.pos++
		}
	}
	return "", errAt(start, "unterminated string literal")
}

// rawWord reads the next run of non-space characters (an unquoted topic
// filter), or a quoted string.
func (l *lexer) rawWord() (string, int, error) {
	l.skipSpace()
	start := l.pos
	if l.pos < len(l.src) && (l.src[l.pos] == '\'' || l.src[l.pos] == '"') {
		s, err := l.quoted(l.src[l.pos])
		return s, start, err
	}
	for l.pos < len(l.src) && !strings.ContainsRune(" \t\n\r\f;", rune(l.src[l.pos])) {
		l.pos++
	}
	return l.src[start:l.pos], start, nil
}
