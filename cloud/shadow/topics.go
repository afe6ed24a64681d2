package shadow

import "strings"

const topicRoot = "$aws/things/"

// ops lists every operation suffix of a shadow topic, requests and responses.
var ops = map[string]bool{
	"update": true, "update/accepted": true, "update/rejected": true,
	"update/delta": true, "update/documents": true,
	"get": true, "get/accepted": true, "get/rejected": true,
	"delete": true, "delete/accepted": true, "delete/rejected": true,
}

// Prefix returns the topic prefix of a shadow: "$aws/things/T/shadow" for the
// classic shadow (name == ""), "$aws/things/T/shadow/name/S" for a named one.
func Prefix(thing, name string) string {
	if name == "" {
		return topicRoot + thing + "/shadow"
	}
	return topicRoot + thing + "/shadow/name/" + name
}

// ParseTopic splits a shadow topic (request or response) into thing, shadow
// name ("" for the classic shadow) and op, e.g. "update", "get/accepted",
// "update/delta". ok is false for any other topic, including one whose thing
// or shadow name is invalid.
func ParseTopic(topic string) (thing, name, op string, ok bool) {
	rest, found := strings.CutPrefix(topic, topicRoot)
	if !found {
		return "", "", "", false
	}
	thing, rest, found = strings.Cut(rest, "/")
	if !found || !validThingName(thing) {
		return "", "", "", false
	}
	rest, found = strings.CutPrefix(rest, "shadow/")
	if !found {
		return "", "", "", false
	}
	if r, named := strings.CutPrefix(rest, "name/"); named {
		name, rest, found = strings.Cut(r, "/")
		if !found || !validShadowName(name) {
			return "", "", "", false
		}
	}
	if !ops[rest] {
		return "", "", "", false
	}
	return thing, name, rest, true
}

// validThingName: 1–128 bytes of [a-zA-Z0-9:_-].
func validThingName(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return false
		}
	}
	return true
}

// validShadowName: 1–64 characters of [$a-zA-Z0-9:_-].
func validShadowName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '$' && !nameByte(s[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == ':' || c == '_' || c == '-'
}
