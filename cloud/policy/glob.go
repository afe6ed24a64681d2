package policy

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

type elemKind uint8

const (
	elemLit  elemKind = iota // text matches itself
	elemStar                 // any run of characters, "/" included
	elemOne                  // exactly one character
	elemVar                  // a policy variable; text is its name, raw the literal ${...}
)

type elem struct {
	kind elemKind
	text string
	raw  string
}

// pattern is a compiled resource, action or condition value.
type pattern struct {
	elems  []elem
	hasVar bool
}

// compilePattern splits s into literals, wildcards (when wildcards is set)
// and variables (when vars is set). ${*}, ${?} and ${$} are literals.
func compilePattern(s string, wildcards, vars bool) pattern {
	var p pattern
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.elems = append(p.elems, elem{kind: elemLit, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '$' && i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				lit.WriteString(s[i:])
				i = len(s)
				continue
			}
			inner := s[i+2 : i+2+end]
			raw := s[i : i+3+end]
			i += 3 + end
			switch {
			case inner == "*" || inner == "?" || inner == "$":
				lit.WriteString(inner)
			case vars && inner != "":
				flush()
				p.elems = append(p.elems, elem{kind: elemVar, text: inner, raw: raw})
				p.hasVar = true
			default:
				lit.WriteString(raw)
			}
		case wildcards && c == '*':
			flush()
			// Consecutive stars are one star.
			if n := len(p.elems); n == 0 || p.elems[n-1].kind != elemStar {
				p.elems = append(p.elems, elem{kind: elemStar})
			}
			i++
		case wildcards && c == '?':
			flush()
			p.elems = append(p.elems, elem{kind: elemOne})
			i++
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	return p
}

// match reports whether s matches p, with variables resolved from vars.
// fold compares ASCII letters case-insensitively.
func (p *pattern) match(s string, vars Vars, fold bool) bool {
	els := p.elems
	if p.hasVar {
		var buf [16]elem
		els = buf[:0]
		for _, e := range p.elems {
			if e.kind == elemVar {
				if v, ok := vars.resolve(e.text); ok {
					e = elem{kind: elemLit, text: v}
				} else {
					e = elem{kind: elemLit, text: e.raw}
				}
			}
			els = append(els, e)
		}
	}
	return globMatch(els, s, fold)
}

// globMatch is the classic single-backtrack glob match: every element other
// than a star matches a fixed run at a given position, so returning to the
// last star is enough. It runs in O(len(p) * len(s)) and never recurses.
func globMatch(p []elem, s string, fold bool) bool {
	pi, si := 0, 0
	starPi, starSi := -1, 0
	for {
		if pi < len(p) {
			e := p[pi]
			switch e.kind {
			case elemStar:
				starPi, starSi = pi, si
				pi++
				continue
			case elemOne:
				if si < len(s) {
					_, n := utf8.DecodeRuneInString(s[si:])
					si += n
					pi++
					continue
				}
			case elemLit:
				if hasPrefix(s[si:], e.text, fold) {
					si += len(e.text)
					pi++
					continue
				}
			}
		} else if si == len(s) {
			return true
		}
		if starPi < 0 || starSi >= len(s) {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starSi:])
		starSi += n
		pi, si = starPi+1, starSi
	}
}

func hasPrefix(s, prefix string, fold bool) bool {
	if len(s) < len(prefix) {
		return false
	}
	if !fold {
		return s[:len(prefix)] == prefix
	}
	for i := 0; i < len(prefix); i++ {
		a, b := s[i], prefix[i]
		if a == b {
			continue
		}
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// Limits AWS applies to certificate policy variables.
const (
	// MaxVarValueLen: a longer value is not substituted.
	MaxVarValueLen = 1024
	// MaxVarValues: multi-valued variables are cut to this many values.
	MaxVarValues = 5
)

// Vars are the policy variables of one request, by name without ${}:
// "iot:ClientId", "iot:Connection.Thing.ThingName",
// "iot:Connection.Thing.Attributes[room]",
// "iot:Certificate.Subject.Organization" (several values for a
// multi-valued attribute), "aws:SourceIp" and so on. A name's first value is
// what ${name} gives; ${name.N} gives value N counted from 0 (AWS's own
// example makes .1 the second value) and name.List all of them, for
// ForAllValues/ForAnyValue conditions.
type Vars map[string][]string

// lookup returns the values of a variable or condition key, following the
// .N and .List suffixes. single reports a name that names one value.
func (v Vars) lookup(name string) (vals []string, ok bool) {
	if vals, ok := v[name]; ok {
		if strings.HasPrefix(name, "iot:Certificate.") && len(vals) > 1 {
			return vals[:1], true
		}
		return vals, true
	}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return nil, false
	}
	base, suffix := name[:dot], name[dot+1:]
	vals, ok = v[base]
	if !ok {
		return nil, false
	}
	if len(vals) > MaxVarValues {
		vals = vals[:MaxVarValues]
	}
	if suffix == "List" {
		return vals, true
	}
	n, err := strconv.Atoi(suffix)
	if err != nil || n < 0 || suffix[0] == '+' || n >= len(vals) {
		return nil, false
	}
	return vals[n : n+1], true
}

// resolve returns the value that ${name} is replaced with, or false if the
// variable must stay literal: unknown, empty list, a list (.List), too long,
// or containing a character that would act as a wildcard.
func (v Vars) resolve(name string) (string, bool) {
	if strings.HasSuffix(name, ".List") {
		return "", false
	}
	vals, ok := v.lookup(name)
	if !ok || len(vals) == 0 {
		return "", false
	}
	s := vals[0]
	if len(s) > MaxVarValueLen || strings.ContainsAny(s, "*$+?#") {
		return "", false
	}
	return s, true
}
