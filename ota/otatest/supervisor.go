package otatest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iotagent/iotagent/ota"
)

// Kind is the kind of an Event.
type Kind string

// The events, in the order a start produces them.
const (
	PreStart     Kind = "prestart"      // ExecStartPre ran; Text is its output, Err its failure
	Started      Kind = "start"         // the agent was started: Slot, Version, PID
	Ready        Kind = "ready"         // READY=1
	Status       Kind = "status"        // STATUS=…, in Text
	Ping         Kind = "watchdog-ping" // WATCHDOG=1
	Stopping     Kind = "stopping"      // STOPPING=1
	StartTimeout Kind = "start-timeout" // no READY=1 in StartTimeout: SIGTERM sent
	Watchdog     Kind = "watchdog"      // no WATCHDOG=1 in WatchdogTimeout: SIGABRT sent
	Killed       Kind = "kill"          // Kill sent SIGKILL
	Exited       Kind = "exit"          // the agent exited: ExitCode or Signal, MaxRSSKB
)

// Event is one step of the supervisor.
type Event struct {
	Seq   int // index in the log
	Kind  Kind
	At    time.Time
	Start int // the start (1-based) the event belongs to
	// Slot is the slot STATE/ota/current pointed to when the agent was
	// started, Version the version state.json gives that slot.
	Slot, Version string
	PID           int
	Text          string
	ExitCode      int            // Exited: -1 when a signal ended it
	Signal        syscall.Signal // Exited: the signal that ended it, or 0
	// PeakRSSKB (Stopping, Exited) is the agent's VmHWM from
	// /proc/PID/status, read at each of its sd_notify messages, the last
	// being STOPPING=1 on its way out: a lower bound of its peak RSS that
	// misses only what it allocated after its last message. (getrusage's
	// ru_maxrss is no use here: Linux counts in it the RSS of the process
	// that forked it, the test binary.)
	PeakRSSKB int64
	Err       error
}

func (e Event) String() string {
	s := fmt.Sprintf("#%d start %d %s", e.Seq, e.Start, e.Kind)
	if e.Slot != "" {
		s += fmt.Sprintf(" slot %s (%s)", e.Slot, e.Version)
	}
	if e.PID != 0 {
		s += fmt.Sprintf(" pid %d", e.PID)
	}
	if e.Kind == Exited {
		if e.Signal != 0 {
			s += " signal " + e.Signal.String()
		} else {
			s += " code " + strconv.Itoa(e.ExitCode)
		}
		s += fmt.Sprintf(" peak RSS >= %d KB", e.PeakRSSKB)
	}
	if e.Text != "" {
		s += ": " + strings.TrimSpace(e.Text)
	}
	if e.Err != nil {
		s += " error: " + e.Err.Error()
	}
	return s
}

// Options configure a Supervisor, as the unit's [Service] section does.
type Options struct {
	StateDir string   // the agent's state dir (STATE)
	Args     []string // ExecStart's arguments after "run", e.g. --config FILE
	Env      []string // the environment; nil: this process's
	// RestartDelay is RestartSec: the pause before a restart (default
	// 100 ms).
	RestartDelay time.Duration
	// StartTimeout is TimeoutStartSec: the wait for READY=1 (0: none);
	// then SIGTERM, and SIGKILL after StopTimeout.
	StartTimeout time.Duration
	// StopTimeout is TimeoutStopSec (and TimeoutAbortSec): the wait after
	// SIGTERM or SIGABRT before SIGKILL (default 10 s).
	StopTimeout time.Duration
	// WatchdogTimeout is WatchdogSec: once READY=1 came, the longest time
	// between WATCHDOG=1 pings (0: no watchdog); then SIGABRT, and SIGKILL
	// after StopTimeout. The agent gets it as WATCHDOG_USEC.
	WatchdogTimeout time.Duration
	// SocketDir holds the notify sockets (default: a new temporary
	// directory; socket paths must stay under 108 bytes).
	SocketDir string
	// Output gets the pre-start step's and the agent's stdout and stderr
	// (nil: discarded).
	Output io.Writer
	// OnEvent, if set, is called with each event, in order, before the
	// supervisor goes on (after PreStart, before the agent is started):
	// a test changes the world there at an exact point.
	OnEvent func(Event)
}

// Supervisor runs one unit. Its methods are safe for concurrent use.
type Supervisor struct {
	o       Options
	l       ota.Layout
	sockDir string

	mu      sync.Mutex
	events  []Event
	changed chan struct{} // closed and replaced on each event
	proc    *os.Process   // the running agent, or nil
	start   int
	killed  bool // Kill was called for proc

	stop    context.CancelFunc // Start's
	runDone chan struct{}
}

// New checks o and returns a Supervisor; Run starts it.
func New(o Options) (*Supervisor, error) {
	if o.StateDir == "" {
		return nil, errors.New("supervisor: no state dir")
	}
	if o.RestartDelay <= 0 {
		o.RestartDelay = 100 * time.Millisecond
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	return &Supervisor{o: o, l: ota.NewLayout(o.StateDir), changed: make(chan struct{})}, nil
}

// Start runs a Supervisor for t in the background; it is stopped (the
// agent gets SIGTERM) when t ends.
func Start(t testing.TB, o Options) *Supervisor {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.runDone = cancel, make(chan struct{})
	go func() {
		defer close(s.runDone)
		if err := s.Run(ctx); err != nil {
			t.Errorf("supervisor: %v", err)
		}
	}()
	t.Cleanup(s.Stop)
	return s
}

// Stop stops a Supervisor made by Start: SIGTERM to the agent (SIGKILL
// after StopTimeout), and waits for it to exit.
func (s *Supervisor) Stop() {
	if s.stop == nil {
		return
	}
	s.stop()
	<-s.runDone
}

// Run starts the agent and restarts it whenever it exits, until ctx ends;
// then it stops the agent and returns once it has exited.
func (s *Supervisor) Run(ctx context.Context) error {
	s.sockDir = s.o.SocketDir
	if s.sockDir == "" {
		d, err := os.MkdirTemp("", "sup")
		if err != nil {
			return fmt.Errorf("supervisor: %w", err)
		}
		s.sockDir = d
		defer os.RemoveAll(d)
	}
	for start := 1; ctx.Err() == nil; start++ {
		s.mu.Lock()
		s.start = start
		s.mu.Unlock()
		if err := s.preStart(ctx, start); err == nil {
			if err := s.runAgent(ctx, start); err != nil {
				return err
			}
		}
		t := time.NewTimer(s.o.RestartDelay)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return nil
}

// preStart runs ExecStartPre from the committed slot.
func (s *Supervisor) preStart(ctx context.Context, start int) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(s.l.Committed(), ota.Binary), "ota", "prestart", "--state-dir", s.o.StateDir)
	cmd.Env = s.o.Env
	cmd.Stdout = io.MultiWriter(&out, s.o.Output)
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("ExecStartPre: %w", err)
	}
	s.emit(Event{Kind: PreStart, Start: start, Text: out.String(), Err: err})
	return err
}

// notifySocket listens for one start's sd_notify datagrams.
func (s *Supervisor) notifySocket(start int) (*net.UnixConn, string, error) {
	p := filepath.Join(s.sockDir, "n"+strconv.Itoa(start))
	_ = os.Remove(p)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		return nil, "", fmt.Errorf("supervisor: notify socket: %w", err)
	}
	return c, p, nil
}

// runAgent starts the agent from the current slot and supervises it until
// it exits. It returns an error only when the supervisor itself cannot go
// on.
func (s *Supervisor) runAgent(ctx context.Context, start int) error {
	sock, sockPath, err := s.notifySocket(start)
	if err != nil {
		return err
	}
	defer os.Remove(sockPath)
	defer sock.Close()

	slot := slotOf(s.l.Current())
	env := append(append([]string(nil), s.o.Env...), "NOTIFY_SOCKET="+sockPath)
	if s.o.WatchdogTimeout > 0 {
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(s.o.WatchdogTimeout.Microseconds(), 10))
	}
	cmd := exec.Command(filepath.Join(s.l.Current(), ota.Binary), append([]string{"run"}, s.o.Args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = s.o.Output, s.o.Output
	// The agent must not outlive a test binary that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	s.mu.Lock()
	err = cmd.Start()
	if err == nil {
		s.proc, s.killed = cmd.Process, false
	}
	s.mu.Unlock()
	if err != nil {
		// As systemd: the start failed (e.g. exec format error); restart.
		s.emit(Event{Kind: Exited, Start: start, Slot: slot, Version: s.slotVersion(slot), ExitCode: -1, Err: err})
		return nil
	}
	pid := cmd.Process.Pid
	base := Event{Start: start, Slot: slot, Version: s.slotVersion(slot), PID: pid}
	ev := func(k Kind, text string) {
		e := base
		e.Kind, e.Text = k, text
		s.emit(e)
	}
	ev(Started, "")

	msgs := make(chan string, 64)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		for {
			n, _, err := sock.ReadFromUnix(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var startT, watchdogT, killT <-chan time.Time
	var timers []*time.Timer
	after := func(d time.Duration) <-chan time.Time {
		t := time.NewTimer(d)
		timers = append(timers, t)
		return t.C
	}
	defer func() {
		for _, t := range timers {
			t.Stop()
		}
	}()
	if s.o.StartTimeout > 0 {
		startT = after(s.o.StartTimeout)
	}
	ready, stopping := false, false
	var hwm int64
	signal := func(sig syscall.Signal) {
		_ = cmd.Process.Signal(sig)
		if killT == nil {
			killT = after(s.o.StopTimeout)
		}
	}
	handle := func(msg string) {
		if kb := vmHWM(pid); kb > hwm {
			hwm = kb
		}
		for _, line := range strings.Split(msg, "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch {
			case k == "READY" && v == "1" && !ready:
				ready, startT = true, nil
				ev(Ready, "")
				if s.o.WatchdogTimeout > 0 {
					watchdogT = after(s.o.WatchdogTimeout)
				}
			case k == "WATCHDOG" && v == "1":
				ev(Ping, "")
				if ready && s.o.WatchdogTimeout > 0 {
					watchdogT = after(s.o.WatchdogTimeout)
				}
			case k == "STOPPING" && v == "1":
				e := base
				e.Kind, e.PeakRSSKB = Stopping, hwm
				s.emit(e)
			case k == "STATUS":
				ev(Status, v)
			}
		}
	}
	done := ctx.Done()
	for {
		select {
		case m := <-msgs:
			handle(m)
		case <-startT:
			startT = nil
			ev(StartTimeout, fmt.Sprintf("no READY=1 in %s: SIGTERM", s.o.StartTimeout))
			signal(syscall.SIGTERM)
		case <-watchdogT:
			watchdogT = nil
			ev(Watchdog, fmt.Sprintf("no WATCHDOG=1 in %s: SIGABRT", s.o.WatchdogTimeout))
			signal(syscall.SIGABRT)
		case <-killT:
			killT = nil
			_ = cmd.Process.Signal(syscall.SIGKILL)
		case <-done:
			done, stopping = nil, true
			signal(syscall.SIGTERM)
		case werr := <-exited:
			s.mu.Lock()
			s.proc = nil
			s.mu.Unlock()
			// Take what the agent said before it exited: stop the reader
			// (taking what it passes on meanwhile), then read what is
			// still queued.
			_ = sock.SetReadDeadline(time.Now())
		reader:
			for {
				select {
				case m := <-msgs:
					handle(m)
				case <-readerDone:
					break reader
				}
			}
		drained:
			for {
				select {
				case m := <-msgs:
					handle(m)
				default:
					break drained
				}
			}
			for _, m := range drain(sock) {
				handle(m)
			}
			e := base
			e.Kind, e.PeakRSSKB = Exited, hwm
			if ps := cmd.ProcessState; ps != nil {
				e.ExitCode = ps.ExitCode()
				if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					e.Signal = ws.Signal()
				}
			}
			var xerr *exec.ExitError
			if werr != nil && !errors.As(werr, &xerr) {
				e.Err = werr
			}
			if stopping {
				e.Text = "stopped"
			}
			s.emit(e)
			return nil
		}
	}
}

// drain reads the datagrams still queued on c without blocking.
func drain(c *net.UnixConn) []string {
	var out []string
	_ = c.SetReadDeadline(time.Time{})
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	buf := make([]byte, 4096)
	_ = rc.Read(func(fd uintptr) bool {
		for {
			n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			if err != nil || n <= 0 {
				return true
			}
			out = append(out, string(buf[:n]))
		}
	})
	return out
}

// vmHWM reads the peak resident set size (KB) of a live process, or 0.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// Kill sends SIGKILL to the running agent (as kill -9 or a power cut
// would end it) and returns its PID; false when no agent is running.
func (s *Supervisor) Kill() (int, bool) {
	s.mu.Lock()
	p, start := s.proc, s.start
	if p == nil || s.killed {
		s.mu.Unlock()
		return 0, false
	}
	s.killed = true
	err := p.Signal(syscall.SIGKILL)
	s.mu.Unlock()
	if err != nil {
		return 0, false
	}
	s.emit(Event{Kind: Killed, Start: start, PID: p.Pid})
	return p.Pid, true
}

// PID returns the running agent's PID, or 0.
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid
}

func (s *Supervisor) emit(e Event) {
	e.At = time.Now()
	s.mu.Lock()
	e.Seq = len(s.events)
	s.events = append(s.events, e)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if s.o.OnEvent != nil {
		s.o.OnEvent(e)
	}
}

// Events returns the log so far.
func (s *Supervisor) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Wait returns the first event with Seq >= from for which match is true,
// waiting for it until ctx ends.
func (s *Supervisor) Wait(ctx context.Context, from int, match func(Event) bool) (Event, error) {
	for {
		s.mu.Lock()
		evs, ch := s.events, s.changed
		s.mu.Unlock()
		for i := max(from, 0); i < len(evs); i++ {
			if match(evs[i]) {
				return evs[i], nil
			}
		}
		from = len(evs)
		select {
		case <-ch:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("supervisor: no such event after #%d: %w", from, ctx.Err())
		}
	}
}

// slotOf returns the slot a link points to ("slots/b" gives "b"), or "".
func slotOf(link string) string {
	t, err := os.Readlink(link)
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

// slotVersion is the version state.json gives slot, or "".
func (s *Supervisor) slotVersion(slot string) string {
	b, err := os.ReadFile(filepath.Join(s.l.Dir, "state.json"))
	if err != nil {
		return ""
	}
	var st ota.Status
	if json.Unmarshal(b, &st) != nil {
		return ""
	}
	switch slot {
	case st.Active:
		return st.ActiveVersion
	case st.Slot:
		return st.Release.Version
	}
	return ""
}

// Is matches events of kind k (for Wait).
func Is(k Kind) func(Event) bool { return func(e Event) bool { return e.Kind == k } }
