package otatest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The test binary is also the supervised "agent": with helperEnv set it
// acts out a mode instead of running the tests.
const helperEnv = "OTATEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

// helper is one start of the fake agent. Modes:
//
//	exit    READY=1, then exit 3
//	ping    READY=1, WATCHDOG=1 every 50 ms; on SIGTERM STOPPING=1, exit 0
//	hang    READY=1, then nothing
//	stuck   nothing, and SIGTERM is ignored
func helper(mode string) int {
	if len(os.Args) > 2 && os.Args[1] == "ota" && os.Args[2] == "prestart" {
		fmt.Println("ota prestart: slot a")
		return 0
	}
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "helper: unexpected arguments", os.Args)
		return 2
	}
	notify := func(s string) {
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: os.Getenv("NOTIFY_SOCKET"), Net: "unixgram"})
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(4)
		}
		defer c.Close()
		if _, err := c.Write([]byte(s)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(4)
		}
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch mode {
	case "exit":
		notify("READY=1\nSTATUS=about to exit")
		return 3
	case "ping":
		if os.Getenv("WATCHDOG_USEC") != "300000" {
			fmt.Fprintln(os.Stderr, "helper: WATCHDOG_USEC", os.Getenv("WATCHDOG_USEC"))
			return 5
		}
		notify("READY=1")
		t := time.NewTicker(50 * time.Millisecond)
		for {
			select {
			case <-t.C:
				notify("WATCHDOG=1")
			case <-term:
				notify("STOPPING=1")
				return 0
			}
		}
	case "hang":
		notify("READY=1")
	}
	for { // hang, SIGTERM ignored (caught and dropped)
		<-term
	}
}

// layout makes STATE/ota with the test binary in slot a and the links.
func layout(t *testing.T) string {
	t.Helper()
	state := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(state, "ota", "slots", "a")
	if err := os.MkdirAll(a, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{exe, filepath.Join(a, "iotagent")}, {"slots/a", filepath.Join(state, "ota", "current")}, {"slots/a", filepath.Join(state, "ota", "committed")}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	return state
}

func start(t *testing.T, mode string, o Options) *Supervisor {
	t.Helper()
	if testing.Short() {
		// make test-arm runs -short under qemu-user, where this ARM test
		// binary cannot exec itself.
		t.Skip("runs this test binary as the agent; skipped with -short")
	}
	o.StateDir = layout(t)
	o.Env = append(os.Environ(), helperEnv+"="+mode, "GORACE=atexit_sleep_ms=0")
	o.RestartDelay = time.Millisecond
	return Start(t, o)
}

func wait(t *testing.T, s *Supervisor, from int, match func(Event) bool) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := s.Wait(ctx, from, match)
	if err != nil {
		evs := s.Events()
		t.Fatalf("%v; last events:\n%v", err, evs[max(0, len(evs)-20):])
	}
	return e
}

// kinds lists the kinds of start n's events, pings left out.
func kinds(s *Supervisor, n int) []string {
	var out []string
	for _, e := range s.Events() {
		if e.Start == n && e.Kind != Ping {
			out = append(out, string(e.Kind))
		}
	}
	return out
}

func TestRestartsOnExit(t *testing.T) {
	s := start(t, "exit", Options{})
	wait(t, s, 0, func(e Event) bool { return e.Kind == Started && e.Start == 3 })
	want := []string{"prestart", "start", "ready", "status", "exit"}
	if diff := cmp.Diff(want, kinds(s, 1)); diff != "" {
		t.Errorf("start 1 (-want +got):\n%s", diff)
	}
	var pre, exit Event
	for _, e := range s.Events() {
		switch {
		case e.Start == 1 && e.Kind == PreStart:
			pre = e
		case e.Start == 1 && e.Kind == Exited:
			exit = e
		}
	}
	if !strings.Contains(pre.Text, "ota prestart: slot a") || pre.Err != nil {
		t.Errorf("prestart: %v", pre)
	}
	if exit.ExitCode != 3 || exit.Signal != 0 || exit.Slot != "a" {
		t.Errorf("exit: %v, want code 3 from slot a", exit)
	}
}

func TestWatchdog(t *testing.T) {
	s := start(t, "hang", Options{WatchdogTimeout: 200 * time.Millisecond, StopTimeout: 5 * time.Second})
	wait(t, s, 0, func(e Event) bool { return e.Kind == Exited })
	// SIGABRT: the Go runtime prints every goroutine and exits 2.
	want := []string{"prestart", "start", "ready", "watchdog", "exit"}
	if diff := cmp.Diff(want, kinds(s, 1)); diff != "" {
		t.Errorf("start 1 (-want +got):\n%s", diff)
	}
	if e := wait(t, s, 0, Is(Exited)); e.ExitCode != 2 {
		t.Errorf("exit after SIGABRT: %v, want code 2", e)
	}
}

func TestPingsKeepItAlive(t *testing.T) {
	s := start(t, "ping", Options{WatchdogTimeout: 300 * time.Millisecond})
	first := wait(t, s, 0, Is(Ping))
	// Ten pings (half a second) in, the watchdog (300 ms) has not fired.
	last := first
	for range 10 {
		last = wait(t, s, last.Seq+1, Is(Ping))
	}
	for _, e := range s.Events() {
		if e.Kind == Watchdog || e.Kind == Exited {
			t.Fatalf("pinged every 50 ms with a 300 ms watchdog: %v", e)
		}
	}
	s.Stop()
	want := []string{"prestart", "start", "ready", "stopping", "exit"}
	if diff := cmp.Diff(want, kinds(s, 1)); diff != "" {
		t.Errorf("start 1 (-want +got):\n%s", diff)
	}
	ex := wait(t, s, 0, Is(Exited))
	if ex.ExitCode != 0 || ex.Text != "stopped" || ex.PeakRSSKB <= 0 {
		t.Errorf("exit after Stop: %v, want code 0, stopped, a peak RSS", ex)
	}
	if n := len(s.Events()); n != ex.Seq+1 {
		t.Errorf("events after the stop: %v", s.Events()[ex.Seq+1:])
	}
}

func TestStartTimeoutEscalates(t *testing.T) {
	// The start timeout leaves the child ample time to catch SIGTERM (its
	// first act) even on a loaded machine under -race.
	s := start(t, "stuck", Options{StartTimeout: 2 * time.Second, StopTimeout: 100 * time.Millisecond})
	ex := wait(t, s, 0, Is(Exited))
	want := []string{"prestart", "start", "start-timeout", "exit"}
	if diff := cmp.Diff(want, kinds(s, 1)); diff != "" {
		t.Errorf("start 1 (-want +got):\n%s", diff)
	}
	if ex.Signal != syscall.SIGKILL {
		t.Errorf("exit: %v, want SIGKILL after SIGTERM was ignored", ex)
	}
}

func TestKill(t *testing.T) {
	s := start(t, "ping", Options{WatchdogTimeout: 300 * time.Millisecond})
	r := wait(t, s, 0, Is(Ready))
	pid, ok := s.Kill()
	if !ok || pid != r.PID {
		t.Fatalf("Kill = %d, %v; want %d", pid, ok, r.PID)
	}
	ex := wait(t, s, 0, Is(Exited))
	if ex.Signal != syscall.SIGKILL || ex.PID != pid {
		t.Errorf("exit: %v, want SIGKILL of %d", ex, pid)
	}
	wait(t, s, ex.Seq, func(e Event) bool { return e.Kind == Ready && e.Start == 2 })
	if _, ok := s.Kill(); !ok {
		t.Error("Kill of the second start failed")
	}
}
