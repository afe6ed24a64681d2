//go:build unix

package statefile

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// LockHolder names the process that holds a lock (flock or POSIX) on
// path, as "pid 123 (iotagent run)", from /proc/locks; "" when it cannot
// tell (no /proc, no lock found).
func LockHolder(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pid, ino, ok := parseLockLine(sc.Text())
		if !ok || ino != uint64(st.Ino) {
			continue
		}
		return describePID(pid)
	}
	return ""
}

// parseLockLine reads a /proc/locks line:
//
//	1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF
//	2: POSIX  ADVISORY  READ 1235 fd:00:99 0 EOF
//	3: -> FLOCK ADVISORY WRITE 1236 08:01:5678 0 EOF   (a waiter)
func parseLockLine(line string) (pid int, ino uint64, ok bool) {
	f := strings.Fields(line)
	if len(f) > 1 && f[1] == "->" {
		return 0, 0, false // blocked, not holding
	}
	if len(f) < 6 {
		return 0, 0, false
	}
	pid, err := strconv.Atoi(f[4])
	if err != nil {
		return 0, 0, false
	}
	parts := strings.Split(f[5], ":")
	if len(parts) != 3 {
		return 0, 0, false
	}
	ino, err = strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return pid, ino, true
}

func describePID(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if err != nil || cmd == "" {
		return fmt.Sprintf("pid %d", pid)
	}
	if len(cmd) > 80 {
		cmd = cmd[:77] + "..."
	}
	return fmt.Sprintf("pid %d (%s)", pid, cmd)
}
