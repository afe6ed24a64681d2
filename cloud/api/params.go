package api

import (
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// nameChars reports whether s is made only of [a-zA-Z0-9:_-] (and '$' when
// dollar is set).
func nameChars(s string, dollar bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == ':', c == '_', c == '-':
		case c == '$' && dollar:
		default:
			return false
		}
	}
	return true
}

// validation formats AWS's model-validation message.
func validation(value, field, constraint string) *apiError {
	return invalid("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: %s",
		truncate(value, 256), field, constraint)
}

func checkLen(value, field string, minLen, maxLen int) error {
	if len(value) < minLen {
		return validation(value, field, "Member must have length greater than or equal to "+strconv.Itoa(minLen))
	}
	if len(value) > maxLen {
		return validation(value, field, "Member must have length less than or equal to "+strconv.Itoa(maxLen))
	}
	return nil
}

// checkThingName validates a thing (or thing type, billing group) name:
// 1-128 of [a-zA-Z0-9:_-].
func checkThingName(field, v string) error {
	if err := checkLen(v, field, 1, 128); err != nil {
		return err
	}
	if !nameChars(v, false) {
		return validation(v, field, "Member must satisfy regular expression pattern: [a-zA-Z0-9:_-]+")
	}
	return nil
}

// checkShadowName validates a shadow name: 1-64 of [$a-zA-Z0-9:_-].
func checkShadowName(v string) error {
	if err := checkLen(v, "shadowName", 1, 64); err != nil {
		return err
	}
	if !nameChars(v, true) {
		return validation(v, "shadowName", "Member must satisfy regular expression pattern: [$a-zA-Z0-9:_-]+")
	}
	return nil
}

// checkCertificateID validates a certificate id: 64 hex digits.
func checkCertificateID(v string) error {
	if err := checkLen(v, "certificateId", 64, 64); err != nil {
		return err
	}
	if strings.Trim(v, "0123456789abcdefABCDEF") != "" {
		return validation(v, "certificateId", "Member must satisfy regular expression pattern: (0x)?[a-fA-F0-9]+")
	}
	return nil
}

// checkAttribute validates an attribute key and value.
func checkAttribute(k, v string) error {
	const keyExtra, valExtra = "_.,@/:#-", "_.,@/:#=[]-"
	ok := func(s, extra string) bool {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
				return false
			}
		}
		return true
	}
	if err := checkLen(k, "attributePayload.attributes.key", 1, 128); err != nil {
		return err
	}
	if !ok(k, keyExtra) {
		return validation(k, "attributePayload.attributes.key", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.,@/:#-]+")
	}
	if err := checkLen(v, "attributePayload.attributes.value", 0, 800); err != nil {
		return err
	}
	if !ok(v, valExtra) {
		return validation(v, "attributePayload.attributes.value", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.,@/:#=\\[\\]-]*")
	}
	return nil
}

// intParam reads an optional integer query parameter in [lo, hi].
func intParam(q url.Values, name string, lo, hi, def int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, invalid("Value '%s' for '%s' is not an integer", truncate(v, 64), name)
	}
	if n < lo {
		return 0, validation(v, name, "Member must have value greater than or equal to "+strconv.Itoa(lo))
	}
	if n > hi {
		return 0, validation(v, name, "Member must have value less than or equal to "+strconv.Itoa(hi))
	}
	return n, nil
}

// Page tokens are opaque to clients: base64 of "o:<offset>".
func encodeToken(offset int) string {
	return base64.StdEncoding.EncodeToString([]byte("o:" + strconv.Itoa(offset)))
}

func decodeToken(tok string) (int, bool) {
	b, err := base64.StdEncoding.DecodeString(tok)
	if err != nil {
		return 0, false
	}
	s, ok := strings.CutPrefix(string(b), "o:")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// page picks the window [start, end) of n items for a request with the given
// token and size parameters, and the token of the next page ("" on the last).
// The next token always points past the current one, so a client following
// tokens never sees the same token twice and always terminates.
func page(n int, q url.Values, tokenParam, sizeParam string, defSize, maxSize int) (start, end int, next string, err error) {
	size, err := intParam(q, sizeParam, 1, maxSize, defSize)
	if err != nil {
		return 0, 0, "", err
	}
	if tok := q.Get(tokenParam); tok != "" {
		var ok bool
		if start, ok = decodeToken(tok); !ok {
			return 0, 0, "", invalid("The %s is not valid", tokenParam)
		}
	}
	start = min(start, n)
	end = min(start+size, n)
	if end < n {
		next = encodeToken(end)
	}
	return start, end, next, nil
}

// checkTopic validates a topic name for Publish, as AWS IoT's broker does.
func checkTopic(topic string, retain bool) error {
	switch {
	case topic == "":
		return invalid("The topic must not be empty")
	case len(topic) > 256:
		return invalid("The topic exceeds the maximum length of 256 bytes")
	case !utf8.ValidString(topic) || strings.ContainsRune(topic, 0):
		return invalid("The topic must be valid UTF-8 without NUL characters")
	case strings.ContainsAny(topic, "+#"):
		return invalid("The topic must not contain the wildcard characters + or #")
	case retain && strings.HasPrefix(topic, "$"):
		return invalid("Retained messages are not allowed on reserved topics")
	}
	counted := topic
	if rest, ok := strings.CutPrefix(topic, "$aws/rules/"); ok {
		if _, after, ok := strings.Cut(rest, "/"); ok {
			counted = after
		}
	}
	if strings.Count(counted, "/") > 7 {
		return invalid("The topic has more than 7 forward slashes")
	}
	return nil
}
