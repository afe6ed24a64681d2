//go:build !unix

package exec

import osexec "os/exec"

// ownGroup: without process groups, a timeout kills the command only.
func ownGroup(*osexec.Cmd) {}
