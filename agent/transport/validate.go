package transport

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// AWS IoT Core limits (shared/spec/mqtt-limits.md §3, §4, §6).
const (
	maxTopicBytes       = 256
	maxPayloadBytes     = 128 * 1024
	maxClientIDBytes    = 128
	maxSubscriptions    = 50
	maxFiltersPerPacket = 8
)

func validateTopic(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalid)
	case len(topic) > maxTopicBytes:
		return fmt.Errorf("%w: topic is %d bytes, limit %d", ErrInvalid, len(topic), maxTopicBytes)
	case !utf8.ValidString(topic):
		return fmt.Errorf("%w: topic is not UTF-8", ErrInvalid)
	case strings.ContainsAny(topic, "+#\x00"):
		return fmt.Errorf("%w: topic %q contains a wildcard or NUL", ErrInvalid, topic)
	}
	return nil
}

func validatePublish(topic string, qos byte, payload []byte) error {
	if err := validateTopic(topic); err != nil {
		return err
	}
	if qos > 1 {
		return fmt.Errorf("%w: QoS %d (AWS IoT supports 0 and 1)", ErrInvalid, qos)
	}
	if len(payload) > maxPayloadBytes {
		return fmt.Errorf("%w: payload is %d bytes, limit %d", ErrInvalid, len(payload), maxPayloadBytes)
	}
	return nil
}

func validateFilter(filter string) error {
	switch {
	case filter == "":
		return fmt.Errorf("%w: empty topic filter", ErrInvalid)
	case len(filter) > maxTopicBytes:
		return fmt.Errorf("%w: topic filter is %d bytes, limit %d", ErrInvalid, len(filter), maxTopicBytes)
	case !utf8.ValidString(filter) || strings.ContainsRune(filter, 0):
		return fmt.Errorf("%w: topic filter is not valid UTF-8", ErrInvalid)
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("%w: topic filter %q: '#' must be the whole last level", ErrInvalid, filter)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("%w: topic filter %q: '+' must be a whole level", ErrInvalid, filter)
		}
	}
	return nil
}

// match reports whether topic matches filter under MQTT rules: '+' is one
// level, '#' the rest (and the parent); filters starting with a wildcard do
// not match '$' topics. A "$share/group/" prefix is ignored.
func match(filter, topic string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			filter = f
		}
	}
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, fRest, fMore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, tRest, tMore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case !fMore && !tMore:
			return true
		case !tMore:
			return fRest == "#" // "a/#" matches "a"
		case !fMore:
			return false
		}
		filter, topic = fRest, tRest
	}
}
