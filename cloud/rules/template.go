package rules

import (
	"fmt"
	"strings"

	"github.com/iotagent/iotagent/cloud/rules/sql"
)

// template is a substitution template: text with ${expression} parts,
// evaluated on the incoming message (AWS's substitution templates).
type template struct {
	parts []templatePart
}

type templatePart struct {
	text string
	expr *sql.Expr // nil for text
}

// parseTemplate parses s; where names the field in errors.
func parseTemplate(s, where string) (*template, error) {
	t := &template{}
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			if s != "" {
				t.parts = append(t.parts, templatePart{text: s})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{text: s[:i]})
		}
		end := closing(s[i+2:])
		if end < 0 {
			return nil, fmt.Errorf("%w: %s: ${ without a closing }", ErrInvalid, where)
		}
		x, err := sql.ParseExpr(s[i+2 : i+2+end])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: substitution ${%s}: %v", ErrInvalid, where, s[i+2:i+2+end], err)
		}
		t.parts = append(t.parts, templatePart{expr: x})
		s = s[i+2+end+1:]
	}
}

// closing finds the } that ends a substitution, skipping quoted strings
// and nested braces.
func closing(s string) int {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '{':
			depth++
		case c == '}':
			if depth == 0 {
				return i
			}
			depth--
		}
	}
	return -1
}

func (t *template) render(m *sql.Message) string {
	if len(t.parts) == 1 && t.parts[0].expr == nil {
		return t.parts[0].text
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr == nil {
			b.WriteString(p.text)
		} else {
			b.WriteString(p.expr.String(m))
		}
	}
	return b.String()
}
