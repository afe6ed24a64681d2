// Package version holds the build's version and commit, stamped by the
// Makefile with -ldflags "-X".
package version

import "runtime"

// Stamped at build time; "dev" and "unknown" in a plain `go build`.
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is "VERSION (COMMIT, GOOS/GOARCH, GOVERSION)".
func String() string {
	return Version + " (" + Commit + ", " + runtime.GOOS + "/" + runtime.GOARCH + ", " + runtime.Version() + ")"
}
