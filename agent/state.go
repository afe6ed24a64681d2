package agent

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/shadow"
)

// Settings are the values the cloud may change through desired state.
type Settings struct {
	Armed     bool
	IntervalS int
	LogLevel  string
	Outputs   map[string]bool
	// Sensors are each part's settings, by part name.
	Sensors map[string]*PartSettings
	// DefenderIntervalS is the Device Defender report interval.
	DefenderIntervalS int
}

// PartSettings are what desired state may change of one part:
// desired.sensors.<name>.limits.<reading> and desired.sensors.<name>.armed.
type PartSettings struct {
	Limits    map[string]config.Limit
	Armed     bool // an alarm input raises alarms while the device is armed
	Alarm     bool // the part is an alarm input: Armed applies
	HasLimits bool // the part has readings: Limits apply
	// Readings are the readings a registry part has returned (every
	// successful read adds its names); nil until its first reading, and
	// for a push part, whose readings are whatever its program sends.
	// Once known, a limit on another reading is refused.
	Readings map[string]bool
}

// unknownReading says why a limit on reading r of part name is refused,
// or "" when ps may hold it: any reading name while the part's readings
// are not known.
func (ps *PartSettings) unknownReading(name, r string) string {
	if ps.Readings == nil || ps.Readings[r] {
		return ""
	}
	have := make([]string, 0, len(ps.Readings))
	for k := range ps.Readings {
		have = append(have, k)
	}
	sort.Strings(have)
	return fmt.Sprintf("%s has no reading %q (it reads %s)", name, r, strings.Join(have, ", "))
}

// Limits on desired values; the same rules as the config file.
const (
	minIntervalS = 1
	maxIntervalS = 86400
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
				bad(path, "moved: set desired.sensors.<name>.limits.temperature_c.high (see the migration in README.md)")
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
				if key == "sensors" {
					changed = append(changed, s.applyPart(sub, v, bad)...)
					continue
				}
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

var knownSections = map[string]struct{}{"alarm": {}, "telemetry": {}, "temperature": {}, "log": {}, "outputs": {}, "defender": {}, "sensors": {}}

// applyPart applies desired.sensors.<name>: its "armed" and its
// "limits", each value on its own.
func (s *Settings) applyPart(name string, v any, bad func(path, format string, args ...any)) (changed []string) {
	path := "sensors." + name
	ps := s.Sensors[name]
	if ps == nil {
		bad(path, "no part called %q is configured", name)
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		bad(path, "want an object, got %s", jsonType(v))
		return nil
	}
	for k, v := range obj {
		kp := path + "." + k
		switch k {
		case "armed":
			b, ok := v.(bool)
			switch {
			case !ps.Alarm:
				bad(kp, "%s is not an alarm input", name)
			case !ok:
				bad(kp, "want true or false, got %s", jsonType(v))
			case b != ps.Armed:
				ps.Armed = b
				changed = append(changed, kp)
			}
		case "limits":
			lims, ok := v.(map[string]any)
			if !ps.HasLimits {
				bad(kp, "%s has no readings", name)
				continue
			}
			if !ok {
				bad(kp, "want an object of readings, got %s", jsonType(v))
				continue
			}
			for r, lv := range lims {
				rp := kp + "." + r
				if !config.ReadingName(r) {
					bad(rp, "not a reading name: want 1 to 32 of a-z 0-9 _")
					continue
				}
				if lv == nil { // null removes the limit
					if _, had := ps.Limits[r]; had {
						delete(ps.Limits, r)
						changed = append(changed, rp)
					}
					continue
				}
				if msg := ps.unknownReading(name, r); msg != "" {
					bad(rp, "%s", msg)
					continue
				}
				old, had := ps.Limits[r]
				l, msg := desiredLimit(old, lv)
				if msg == "" {
					msg = config.LimitProblem(l)
				}
				if msg != "" {
					bad(rp, "%s", msg)
					continue
				}
				if !had || !sameLimit(old, l) {
					ps.Limits[r] = l
					changed = append(changed, rp)
				}
			}
		default:
			bad(kp, "unknown setting (want \"limits\" or \"armed\")")
		}
	}
	return changed
}

// desiredLimit merges {"high":…, "low":…, "hysteresis":…} from desired
// state into the limit held (the zero Limit when there is none), as the
// shadow merges desired state: a delta carries only the keys that
// changed, so a key left out keeps its value and a null key removes it
// (a null hysteresis is 0). The caller checks the result as a whole.
func desiredLimit(cur config.Limit, v any) (config.Limit, string) {
	obj, ok := v.(map[string]any)
	if !ok {
		return config.Limit{}, fmt.Sprintf("want an object with high, low and hysteresis, got %s", jsonType(v))
	}
	l := cur
	for k, v := range obj {
		if v == nil {
			switch k {
			case "high":
				l.High = nil
			case "low":
				l.Low = nil
			case "hysteresis":
				l.Hysteresis = 0
			default:
				return l, fmt.Sprintf("unknown key %q (want high, low, hysteresis)", k)
			}
			continue
		}
		f, ok := number(v)
		if !ok {
			return l, fmt.Sprintf("%s: want a number, got %s", k, jsonText(v))
		}
		switch k {
		case "high":
			l.High = &f
		case "low":
			l.Low = &f
		case "hysteresis":
			l.Hysteresis = f
		default:
			return l, fmt.Sprintf("unknown key %q (want high, low, hysteresis)", k)
		}
	}
	return l, ""
}

func sameLimit(a, b config.Limit) bool {
	eq := func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eq(a.High, b.High) && eq(a.Low, b.Low) && a.Hysteresis == b.Hysteresis
}

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
