package main

import (
	"io"
	"strings"

	"github.com/iotagent/iotagent/agent/config"
)

// reorder moves positional arguments after the flags, so that
// "validate FILE --json" parses like "validate --json FILE".
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			return append(flags, pos...)
		case strings.HasPrefix(a, "-") && a != "-":
			flags = append(flags, a)
			if !strings.Contains(a, "=") && takesValue(a) && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}

// takesValue reports whether a flag of the client commands takes a value.
func takesValue(flag string) bool {
	switch strings.TrimLeft(flag, "-") {
	case "config", "socket", "timeout", "interval", "count", "n", "limit", "state-dir":
		return true
	}
	return false
}

// validateResult is config validate's --json answer.
type validateResult struct {
	File     string   `json:"file"`
	Valid    bool     `json:"valid"`
	Problems []string `json:"problems,omitempty"`
}

func validateJSON(w io.Writer, path string, err error) error {
	r := validateResult{File: path, Valid: err == nil}
	if err != nil {
		if fes := config.FieldErrors(err); len(fes) > 0 {
			for _, fe := range fes {
				r.Problems = append(r.Problems, fe.Error())
			}
		} else {
			r.Problems = []string{err.Error()}
		}
	}
	if perr := printJSON(w, r); perr != nil {
		return perr
	}
	if err != nil {
		return &exitError{code: exitFail, err: err}
	}
	return nil
}
