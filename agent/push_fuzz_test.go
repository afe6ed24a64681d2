package agent

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// FuzzDecodePush: whatever the body, decodePush never panics, and what it
// accepts holds only finite-or-not numbers under the keys sent, each
// refusal naming a key or the body.
func FuzzDecodePush(f *testing.F) {
	for _, s := range []string{`{"part":"tank","values":{"level_pct":41.5}}`, `{"part":"bell","active":true}`,
		`{"part":"tank","values":{"level_pct":"41"}}`, `{"values":null}`, `[]`, `{"part":1}`, `{"a":1} {}`, `{"values":{"x":1e999}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, msg := decodePush(body)
		if msg != "" {
			if strings.Contains(msg, "Go ") || strings.Contains(msg, "json:") {
				t.Errorf("message with Go internals: %s", msg)
			}
			return
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(body, &top); err != nil {
			t.Fatalf("accepted %q, which is not a JSON object: %v", body, err)
		}
		for k, v := range req.Values {
			if math.IsInf(v, 0) {
				t.Errorf("values.%s accepted as %v", k, v)
			}
		}
	})
}
