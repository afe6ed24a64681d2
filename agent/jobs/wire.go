package jobs

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Execution statuses (spec/jobs.md §4).
const (
	StatusQueued     = "QUEUED"
	StatusInProgress = "IN_PROGRESS"
	StatusSucceeded  = "SUCCEEDED"
	StatusFailed     = "FAILED"
	StatusRejected   = "REJECTED"
)

type execution struct {
	JobID           string            `json:"jobId"`
	Status          string            `json:"status"`
	StatusDetails   map[string]string `json:"statusDetails,omitempty"`
	JobDocument     json.RawMessage   `json:"jobDocument,omitempty"`
	VersionNumber   int64             `json:"versionNumber"`
	ExecutionNumber int64             `json:"executionNumber"`
}

type executionState struct {
	Status        string            `json:"status"`
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	VersionNumber int64             `json:"versionNumber"`
}

// response is any accepted, rejected or notify payload.
type response struct {
	ClientToken    string          `json:"clientToken,omitempty"`
	Execution      *execution      `json:"execution,omitempty"`
	ExecutionState *executionState `json:"executionState,omitempty"`
	Code           string          `json:"code,omitempty"`
	Message        string          `json:"message,omitempty"`
	rejected       bool
	topic          string
}

type startNextRequest struct {
	ClientToken          string            `json:"clientToken"`
	StepTimeoutInMinutes int64             `json:"stepTimeoutInMinutes,omitempty"`
	StatusDetails        map[string]string `json:"statusDetails,omitempty"`
}

type updateRequest struct {
	Status                   string            `json:"status"`
	StatusDetails            map[string]string `json:"statusDetails,omitempty"`
	ExpectedVersion          int64             `json:"expectedVersion,omitempty"`
	StepTimeoutInMinutes     int64             `json:"stepTimeoutInMinutes,omitempty"`
	IncludeJobExecutionState bool              `json:"includeJobExecutionState"`
	ClientToken              string            `json:"clientToken"`
}

// Limits of statusDetails (spec/jobs.md §7).
const (
	maxDetailKey   = 128
	maxDetailValue = 1024
)

// cleanDetails makes a map AWS accepts: keys [a-zA-Z0-9:_-]{1,128} (others
// are dropped), values without control characters, at most 1024 runes (the
// last ones are kept: the end of an error or an output says most), never
// empty.
func cleanDetails(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		if !validDetailKey(k) {
			continue
		}
		v = strings.Map(func(r rune) rune {
			if r == utf8.RuneError || unicode.Is(unicode.C, r) {
				return ' '
			}
			return r
		}, v)
		if n := utf8.RuneCountInString(v); n > maxDetailValue {
			r := []rune(v)
			v = string(r[n-maxDetailValue:])
		}
		if v == "" {
			v = "-"
		}
		out[k] = v
	}
	return out
}

func validDetailKey(k string) bool {
	if k == "" || len(k) > maxDetailKey {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
