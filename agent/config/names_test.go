package config

import (
	"regexp"
	"testing"
)

// The name checks accept exactly what the regexps they replaced accept.
var nameRegexps = []struct {
	name  string
	match func(string) bool
	re    *regexp.Regexp
}{
	{"thing", thingName.match, regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)},
	{"output", outputName.match, regexp.MustCompile(`^[a-z0-9_]{1,32}$`)},
	{"template", templateName.match, regexp.MustCompile(`^[0-9A-Za-z_-]{1,36}$`)},
	{"pin", pinName.match, regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)},
	{"bus", busName.match, regexp.MustCompile(`^[A-Za-z0-9_/.-]{1,64}$`)},
	{"group", validGroup, regexp.MustCompile(`^([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})$`)},
}

func TestNameClassesMatchRegexps(t *testing.T) {
	long := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		return string(b)
	}
	for _, s := range []string{"", "a", "A", "0", "_", "-", ":", "/", ".", " ", "é", "box-1", "Box:1", "GPIO4", "P1_7",
		"/dev/i2c-1", "1", "iotagent", "_svc", "-x", "1a", "12345678901", "gpio4\n", long(32), long(33), long(36), long(37), long(64), long(65), long(128), long(129)} {
		for _, n := range nameRegexps {
			if got, want := n.match(s), n.re.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, the regexp says %v", n.name, s, got, want)
			}
		}
	}
}

func FuzzNameClasses(f *testing.F) {
	for _, s := range []string{"box-1", "_svc", "/dev/i2c-1", "12345", "P1_7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, n := range nameRegexps {
			if got, want := n.match(s), n.re.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, the regexp says %v", n.name, s, got, want)
			}
		}
	})
}
