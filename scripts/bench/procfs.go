package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Mem is a process's memory from /proc/PID/smaps_rollup, in KiB.
type Mem struct {
	RSS, PSS int64
}

var errNoField = errors.New("field missing")

// parseSmapsRollup reads the Rss and Pss lines of smaps_rollup.
func parseSmapsRollup(b []byte) (Mem, error) {
	var m Mem
	var haveRSS, havePSS bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || v < 0 {
			continue
		}
		switch f[0] {
		case "Rss:":
			m.RSS, haveRSS = v, true
		case "Pss:":
			m.PSS, havePSS = v, true
		}
	}
	if !haveRSS || !havePSS {
		return m, fmt.Errorf("smaps_rollup: Rss or Pss %w", errNoField)
	}
	return m, nil
}

func readMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Mem{}, err
	}
	return parseSmapsRollup(b)
}

// parseStatusField returns an integer field of /proc/PID/status such as
// "Threads" or "VmHWM" (the number before any unit).
func parseStatusField(b []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("status: %s %w", name, errNoField)
}

func readStatusField(pid int, name string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusField(b, name)
}

// cpuTime is the CPU time of every live thread of pid, from the first
// field of /proc/PID/task/*/schedstat (nanoseconds on the CPU). Threads
// that have exited are not counted; Go programs rarely end threads.
func cpuTime(pid int) (time.Duration, error) {
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil {
		return 0, err
	}
	if len(paths) == 0 {
		return 0, fmt.Errorf("process %d: no threads", pid)
	}
	var total time.Duration
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p, err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}
