package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// errNoRSS: /proc/PID/status has no usable VmRSS line.
var errNoRSS = errors.New("no VmRSS line")

// parseVmRSS returns the VmRSS of a /proc/PID/status file, in KiB.
func parseVmRSS(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "VmRSS" {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS %q: want \"N kB\"", strings.TrimSpace(v))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("VmRSS %q: not a size", f[0])
		}
		return n, nil
	}
	return 0, errNoRSS
}

// rssKiB is the resident set of process pid, in KiB.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	n, err := parseVmRSS(b)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return n, nil
}

// openFiles counts the open file descriptors of process pid.
func openFiles(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(es), nil
}

// drift is how much a series of RSS samples (KiB) grew: the median of its
// last window minus the median of its first, each window a tenth of the
// samples (at least 3). Medians ignore the odd spike of a garbage
// collection cycle; ok is false with fewer than 6 samples.
func drift(samples []int64) (first, last, d int64, ok bool) {
	if len(samples) < 6 {
		return 0, 0, 0, false
	}
	w := max(3, len(samples)/10)
	first, last = median(samples[:w]), median(samples[len(samples)-w:])
	return first, last, last - first, true
}

func median(s []int64) int64 {
	c := slices.Clone(s)
	slices.Sort(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}
