package broker

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// AWS IoT Core message broker limits (shared/spec/mqtt-limits.md).
const (
	MaxClientIDBytes              = 128
	MaxTopicBytes                 = 256
	MaxTopicSlashes               = 7
	MaxFiltersPerSubscribe        = 8
	MaxSubscriptionsPerConnection = 50
	MaxPayloadBytes               = 128 * 1024
	MinKeepAlive                  = 30
	MaxKeepAlive                  = 1200
	MaxSessionExpiry              = 3600
	ReceiveMaximum                = 100
	TopicAliasMaximum             = 8
	// maxPacketSize bounds a whole packet: the 128 KiB payload plus headers
	// and properties (about 146 KiB, the figure commonly cited for AWS).
	maxPacketSize = 146 * 1024
	// maxClientWritesPending is how many messages may wait to be written
	// to one client: ten seconds at AWS's 100 publishes/s per connection.
	maxClientWritesPending = 1024
)

// Errors from CheckTopicName and CheckFilter.
var (
	ErrTopicInvalid  = errors.New("broker: invalid topic")
	ErrFilterInvalid = errors.New("broker: invalid topic filter")
)

const rulesPrefix = "$aws/rules/"

// slashes counts the '/' in a topic or filter the way AWS limits them: the
// Basic Ingest prefix $aws/rules/<rule>/ does not count.
func slashes(topic string) int {
	if rest, ok := strings.CutPrefix(topic, rulesPrefix); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			topic = rest[i+1:]
		} else {
			topic = ""
		}
	}
	return strings.Count(topic, "/")
}

// CheckTopicName reports whether topic may be published to: non-empty
// UTF-8 without NUL, at most 256 bytes and 7 slashes, no wildcards.
func CheckTopicName(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: empty", ErrTopicInvalid)
	case len(topic) > MaxTopicBytes:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTopicInvalid, len(topic), MaxTopicBytes)
	case !utf8.ValidString(topic) || strings.IndexByte(topic, 0) >= 0:
		return fmt.Errorf("%w: not valid UTF-8", ErrTopicInvalid)
	case strings.ContainsAny(topic, "+#"):
		return fmt.Errorf("%w: wildcard in topic name %q", ErrTopicInvalid, topic)
	case slashes(topic) > MaxTopicSlashes:
		return fmt.Errorf("%w: %q has more than %d slashes", ErrTopicInvalid, topic, MaxTopicSlashes)
	}
	return nil
}

// CheckFilter reports whether filter may be subscribed to: a valid MQTT
// filter ('+' and '#' only as whole levels, '#' last), at most 256 bytes and
// 7 slashes. Shared subscriptions ($share/<group>/<filter>) are checked on
// their inner filter.
func CheckFilter(filter string) error {
	if len(filter) > MaxTopicBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrFilterInvalid, len(filter), MaxTopicBytes)
	}
	if !utf8.ValidString(filter) || strings.IndexByte(filter, 0) >= 0 {
		return fmt.Errorf("%w: not valid UTF-8", ErrFilterInvalid)
	}
	inner, shared, ok := splitShared(filter)
	if shared && !ok {
		return fmt.Errorf("%w: bad shared subscription %q", ErrFilterInvalid, filter)
	}
	if inner == "" {
		return fmt.Errorf("%w: empty", ErrFilterInvalid)
	}
	levels := strings.Split(inner, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) != 1 {
			return fmt.Errorf("%w: wildcard inside level %q", ErrFilterInvalid, l)
		}
		if l == "#" && i != len(levels)-1 {
			return fmt.Errorf("%w: '#' not last in %q", ErrFilterInvalid, inner)
		}
	}
	if slashes(inner) > MaxTopicSlashes {
		return fmt.Errorf("%w: %q has more than %d slashes", ErrFilterInvalid, inner, MaxTopicSlashes)
	}
	return nil
}

// splitShared returns the inner filter of $share/<group>/<filter>; shared
// reports whether filter is a shared subscription and ok whether it is well
// formed.
func splitShared(filter string) (inner string, shared, ok bool) {
	rest, found := strings.CutPrefix(filter, "$share/")
	if !found {
		return filter, false, true
	}
	group, inner, found := strings.Cut(rest, "/")
	if !found || group == "" || strings.ContainsAny(group, "+#") || inner == "" {
		return "", true, false
	}
	return inner, true, true
}

// innerFilter strips a $share/<group>/ prefix.
func innerFilter(filter string) string {
	inner, _, ok := splitShared(filter)
	if !ok {
		return filter
	}
	return inner
}

func hasWildcard(filter string) bool { return strings.ContainsAny(filter, "+#") }

// Match reports whether topic matches filter with AWS IoT's semantics: '+'
// matches one level, '#' matches the levels at and below its position but
// not the parent ("a/#" matches "a/" and "a/b", not "a"), and a filter that
// starts with a wildcard does not match topics starting with '$'.
func Match(filter, topic string) bool {
	if filter == "" || topic == "" {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	fi, ti := 0, 0
	for {
		fEnd := levelEnd(filter, fi)
		fl := filter[fi:fEnd]
		if fl == "#" {
			return true
		}
		tEnd := levelEnd(topic, ti)
		if fl != "+" && fl != topic[ti:tEnd] {
			return false
		}
		fDone, tDone := fEnd == len(filter), tEnd == len(topic)
		switch {
		case fDone && tDone:
			return true
		case fDone || tDone:
			return false
		}
		fi, ti = fEnd+1, tEnd+1
	}
}

func levelEnd(s string, from int) int {
	if i := strings.IndexByte(s[from:], '/'); i >= 0 {
		return from + i
	}
	return len(s)
}

// clampKeepAlive applies AWS's keep-alive rule: 0 or more than 1200 s means
// 1200 s, less than 30 s means 30 s.
func clampKeepAlive(k uint16) uint16 {
	switch {
	case k == 0 || k > MaxKeepAlive:
		return MaxKeepAlive
	case k < MinKeepAlive:
		return MinKeepAlive
	}
	return k
}
