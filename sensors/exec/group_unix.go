//go:build unix

package exec

import (
	osexec "os/exec"
	"syscall"
)

// ownGroup runs the command in its own process group, and kills the group
// (the command and anything it started) when it times out.
func ownGroup(cmd *osexec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
