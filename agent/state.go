package agent

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/iotagent/iotagent/agent/shadow"
)

// Settings are the values the cloud may change through desired state.
type Settings struct {
	Armed     bool
	IntervalS int
	MaxC      float64
	LogLevel  string
	Outputs   map[string]bool
	// DefenderIntervalS is the Device Defender report interval.
	DefenderIntervalS int
}

// Limits on desired values; the same rules as the config file.
const (
	minIntervalS = 1
	maxIntervalS = 86400
	minMaxC      = -40
	maxMaxC      = 85
	// AWS advises at least 300 s; iotsim accepts shorter, for tests.
	minDefenderS = 5
)

var logLevels = []string{"debug", "info", "warn", "error"}

// ApplyDesired applies a desired (or delta) document to s. Each value is
// checked on its own: a valid one is applied, an invalid or unknown one is
// left out and described in the returned problems (sorted, one per path),
// so one bad key never blocks the others. It reports which settings
// changed. It never panics, whatever the document holds.
func (s *Settings) ApplyDesired(desired map[string]any) (changed []string, problems []string) {
	bad := func(path, format string, args ...any) {
		problems = append(problems, "desired."+path+": "+fmt.Sprintf(format, args...))
	}
	for key, v := range desired {
		sect, ok := v.(map[string]any)
		if !ok {
			if _, known := knownSections[key]; known {
				bad(key, "want an object, got %s", jsonType(v))
			} else {
				bad(key, "unknown setting")
			}
			continue
		}
		for sub, v := range sect {
			path := key + "." + sub
			switch path {
			case "alarm.armed":
				b, ok := v.(bool)
				if !ok {
					bad(path, "want true or false, got %s", jsonType(v))
					continue
				}
				if s.Armed != b {
					s.Armed = b
					changed = append(changed, path)
				}
			case "telemetry.interval_s":
				n, ok := wholeNumber(v)
				if !ok || n < minIntervalS || n > maxIntervalS {
					bad(path, "want a whole number of seconds from %d to %d, got %s", minIntervalS, maxIntervalS, jsonText(v))
					continue
				}
				if s.IntervalS != int(n) {
					s.IntervalS = int(n)
					changed = append(changed, path)
				}
			case "temperature.max_c":
				f, ok := number(v)
				if !ok || f < minMaxC || f > maxMaxC {
					bad(path, "want a number from %d to %d, got %s", minMaxC, maxMaxC, jsonText(v))
					continue
				}
				if s.MaxC != f {
					s.MaxC = f
					changed = append(changed, path)
				}
			case "defender.interval_s":
				n, ok := wholeNumber(v)
				if !ok || n < minDefenderS || n > maxIntervalS {
					bad(path, "want a whole number of seconds from %d to %d, got %s", minDefenderS, maxIntervalS, jsonText(v))
					continue
				}
				if s.DefenderIntervalS != int(n) {
					s.DefenderIntervalS = int(n)
					changed = append(changed, path)
				}
			case "log.level":
				l, ok := v.(string)
				if !ok || !contains(logLevels, l) {
					bad(path, "want one of %s, got %s", strings.Join(logLevels, ", "), jsonText(v))
					continue
				}
				if s.LogLevel != l {
					s.LogLevel = l
					changed = append(changed, path)
				}
			default:
				if key != "outputs" {
					bad(path, "unknown setting")
					continue
				}
				cur, fitted := s.Outputs[sub]
				if !fitted {
					bad(path, "no output called %q is configured", sub)
					continue
				}
				b, ok := v.(bool)
				if !ok {
					bad(path, "want true or false, got %s", jsonType(v))
					continue
				}
				if cur != b {
					s.Outputs[sub] = b
					changed = append(changed, path)
				}
			}
		}
	}
	sort.Strings(changed)
	sort.Strings(problems)
	return changed, problems
}

var knownSections = map[string]struct{}{"alarm": {}, "telemetry": {}, "temperature": {}, "log": {}, "outputs": {}, "defender": {}}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func wholeNumber(v any) (int64, bool) {
	f, ok := number(v)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case shadow.Invalid:
		return "a value " + x.Reason
	}
	return fmt.Sprintf("%T", v)
}

// jsonText quotes a value for a message, cut short so that a huge desired
// value cannot make a huge reported error.
func jsonText(v any) string {
	if _, ok := v.(shadow.Invalid); ok {
		return jsonType(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return jsonType(v)
	}
	if r := []rune(string(b)); len(r) > 40 {
		return string(r[:37]) + "..."
	}
	return string(b)
}
