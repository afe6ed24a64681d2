package shadow

import (
	"encoding/json"
	"fmt"
)

// Error is a rejection by the shadow service: the MQTT error document that
// goes to .../rejected, and, through Code, the HTTP status of the REST API.
// Every non-nil error returned by Service methods is an *Error.
type Error struct {
	Code        int    `json:"code"`
	Message     string `json:"message"`
	Timestamp   int64  `json:"timestamp,omitempty"`
	ClientToken string `json:"clientToken,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("shadow: %d %s", e.Code, e.Message) }

// Document is the error document published on a .../rejected topic.
func (e *Error) Document() []byte {
	b, _ := json.Marshal(e)
	return b
}
