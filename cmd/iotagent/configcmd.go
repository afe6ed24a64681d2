package main

import (
	"io"

	"github.com/iotagent/iotagent/agent/config"
)

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
		return &exitError{code: exitFail, err: err, shown: true}
	}
	return nil
}
