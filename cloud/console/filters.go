package console

import (
	"errors"
	"fmt"
	"strings"

	"github.com/iotagent/iotagent/cloud/broker"
)

// MaxFilters bounds the topic filters one live view watches.
const MaxFilters = 16

// ErrFilters: the live view's topic filters are not usable.
var ErrFilters = errors.New("console: bad topic filters")

// ParseFilters reads the topic filters a person typed into the live view:
// separated by newlines or commas, blanks around them ignored, each a valid
// MQTT/AWS topic filter, at most MaxFilters, duplicates dropped. An error
// names the filter at fault.
func ParseFilters(in string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.FieldsFunc(in, func(r rune) bool { return r == '\n' || r == ',' || r == '\r' }) {
		f = strings.TrimSpace(f)
		if f == "" || seen[f] {
			continue
		}
		if strings.HasPrefix(f, "$share/") {
			return nil, fmt.Errorf("%w: %q: a shared subscription means nothing to a live view", ErrFilters, f)
		}
		if err := broker.CheckFilter(f); err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrFilters, f, err)
		}
		if len(out) == MaxFilters {
			return nil, fmt.Errorf("%w: more than %d", ErrFilters, MaxFilters)
		}
		seen[f] = true
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrFilters)
	}
	return out, nil
}
