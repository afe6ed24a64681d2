// Package version holds the build's version and commit, stamped by the
// Makefile with -ldflags "-X".
package version

import (
	"bytes"
	"runtime"
	"strings"
)

// Stamped at build time; "dev" and "unknown" in a plain `go build`.
var (
	Version = "dev"
	Commit  = "unknown"
)

// StampKey names the version stamp: the Makefile sets
//
//	-X github.com/iotagent/iotagent/internal/version.stamp=StampKey:VERSION;
//
// and the binary then holds that exact text, which the release tooling
// (iotagent ota release) finds with Stamps: Go keeps no -ldflags in the
// build info of a -trimpath build. When set, the stamp is the Version.
const StampKey = "iotagent-version"

// stamp is "StampKey:VERSION;" when the build set it.
var stamp string

func init() {
	if v, ok := parseStamp(stamp); ok {
		Version = v
	}
}

// parseStamp reads "StampKey:V;". It never holds the text "StampKey:" as
// one literal, so that the only such text in a binary is the stamp.
func parseStamp(s string) (string, bool) {
	rest, ok := strings.CutPrefix(s, StampKey)
	if !ok || len(rest) < 3 || rest[0] != ':' {
		return "", false
	}
	v, ok := strings.CutSuffix(rest[1:], ";")
	if !ok || !validStamp(v) {
		return "", false
	}
	return v, true
}

// validStamp: 1 to 64 printable ASCII characters, none of them a space
// or ';'.
func validStamp(v string) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c == ';' {
			return false
		}
	}
	return true
}

// Stamps returns the distinct versions stamped in a binary's bytes (see
// StampKey), in the order found: one for a build of the Makefile, none for
// a plain go build.
func Stamps(data []byte) []string {
	var out []string
	key := []byte(StampKey)
	for i := 0; ; {
		j := bytes.Index(data[i:], key)
		if j < 0 {
			return out
		}
		start := i + j
		i = start + len(key)
		end := min(len(data), i+1+64+1)
		k := bytes.IndexByte(data[i:end], ';')
		if k < 0 {
			continue
		}
		if v, ok := parseStamp(string(data[start : i+k+1])); ok && !contains(out, v) {
			out = append(out, v)
		}
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// String is "VERSION (COMMIT, GOOS/GOARCH, GOVERSION)".
func String() string {
	return Version + " (" + Commit + ", " + runtime.GOOS + "/" + runtime.GOARCH + ", " + runtime.Version() + ")"
}
