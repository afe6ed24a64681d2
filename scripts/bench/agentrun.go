package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/broker"
)

// event is something the broker saw a device publish, and when.
type event struct {
	at       time.Time
	topic    string
	reported map[string]any // shadow/update only
}

// watch is one agent run's view of what reaches iotsim.
type watch struct {
	requests  chan event // every shadow request (get or update)
	reported  chan event // shadow updates carrying reported state
	alarms    chan event
	telemetry atomic.Int64
	firstTel  atomic.Pointer[time.Time]
	lastTel   atomic.Pointer[time.Time]
	dropped   atomic.Int64 // events lost because a channel was full
}

// stamps is a list of times something was seen, safe for concurrent use.
type stamps struct {
	mu sync.Mutex
	at []time.Time
}

func (s *stamps) add(t time.Time) {
	s.mu.Lock()
	s.at = append(s.at, t)
	s.mu.Unlock()
}

// between counts the times in [from, to).
func (s *stamps) between(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.at {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

func newWatch() *watch {
	return &watch{
		requests: make(chan event, 4096),
		reported: make(chan event, 4096),
		alarms:   make(chan event, 4096),
	}
}

// observer reads iotsim's side: broker handlers registered once (they
// cannot be removed), feeding the current watch.
type observer struct {
	cur      atomic.Pointer[watch]
	defender stamps // Device Defender reports the agent published
}

func observe(sim *cloud.Sim, thing string) *observer {
	o := &observer{}
	o.cur.Store(newWatch())
	send := func(ch func(*watch) chan event, ev event) {
		w := o.cur.Load()
		select {
		case ch(w) <- ev:
		default:
			w.dropped.Add(1)
		}
	}
	prefix := "$aws/things/" + thing + "/shadow/"
	// Registered after iotsim's own shadow handler, so it runs once the
	// shadow service has stored the update and answered it.
	sim.Broker().Handle(prefix+"+", func(_ *broker.Principal, topic string, p []byte) {
		ev := event{at: time.Now(), topic: topic}
		send(func(w *watch) chan event { return w.requests }, ev)
		if topic != prefix+"update" {
			return
		}
		var u struct {
			State struct {
				Reported map[string]any `json:"reported"`
			} `json:"state"`
		}
		if json.Unmarshal(p, &u) == nil && u.State.Reported != nil {
			ev.reported = u.State.Reported
			send(func(w *watch) chan event { return w.reported }, ev)
		}
	})
	sim.Broker().Handle("alarms/"+thing, func(_ *broker.Principal, topic string, _ []byte) {
		send(func(w *watch) chan event { return w.alarms }, event{at: time.Now(), topic: topic})
	})
	sim.Broker().Handle("$aws/things/"+thing+"/defender/metrics/+", func(*broker.Principal, string, []byte) {
		o.defender.add(time.Now())
	})
	sim.Broker().Handle("telemetry/"+thing, func(*broker.Principal, string, []byte) {
		now := time.Now()
		w := o.cur.Load()
		w.firstTel.CompareAndSwap(nil, &now)
		w.lastTel.Store(&now)
		w.telemetry.Add(1)
	})
	return o
}

// reset starts a fresh watch and returns it.
func (o *observer) reset() *watch {
	w := newWatch()
	o.cur.Store(w)
	return w
}

// errTimeout: an awaited event did not come in time.
var errTimeout = errors.New("timed out")

// next waits for the first event on ch that ok accepts.
func next(ctx context.Context, ch <-chan event, limit time.Duration, ok func(event) bool) (event, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case ev := <-ch:
			if ok == nil || ok(ev) {
				return ev, nil
			}
		case <-t.C:
			return event{}, errTimeout
		case <-ctx.Done():
			return event{}, ctx.Err()
		}
	}
}

// lookup reads a nested value such as "alarm.armed" from a JSON object.
func lookup(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[p]
	}
	return v
}

// agentEnv is what an iotagent process needs to reach a sim.
type agentEnv struct {
	bin, config string
	thing       string
	idDir       string
	host, port  string
	logDir      string
	extraEnv    []string
}

// agentProc is a running iotagent.
type agentProc struct {
	cmd      *exec.Cmd
	start    time.Time
	stateDir string
	logPath  string
	done     chan struct{}
	waitErr  error
}

// start runs the real iotagent binary with stateDir as its state dir.
func (e agentEnv) start(stateDir string) (*agentProc, error) {
	logPath := filepath.Join(e.logDir, fmt.Sprintf("iotagent-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(e.bin, "iotagent"), "run", "--config", e.config, "--state-dir", stateDir,
		"--endpoint", e.host, "--port", e.port, "--root-ca", filepath.Join(e.idDir, "root-ca.pem"),
		"--cert", filepath.Join(e.idDir, e.thing+".crt"), "--key", filepath.Join(e.idDir, e.thing+".key"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), e.extraEnv...)
	p := &agentProc{cmd: cmd, stateDir: stateDir, logPath: logPath, done: make(chan struct{})}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start iotagent: %w", err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *agentProc) pid() int { return p.cmd.Process.Pid }

// alive reports an error if the agent has exited.
func (p *agentProc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("iotagent exited (%v); log:\n%s", p.waitErr, p.logTail())
	default:
		return nil
	}
}

func (p *agentProc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stop sends SIGTERM and waits up to 15 s, then kills.
func (p *agentProc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("iotagent did not stop within 15s of SIGTERM; killed")
	}
}

// quitDump sends SIGQUIT (the Go runtime prints every goroutine and exits)
// and counts the goroutines in the dump.
func (p *agentProc) quitDump() (int, error) {
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return 0, errors.New("no exit after SIGQUIT")
	}
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return 0, err
	}
	n := countGoroutines(b)
	if n == 0 {
		return 0, errors.New("no goroutine dump in the log")
	}
	return n, nil
}

// countGoroutines counts the goroutines of a SIGQUIT traceback, leaving
// out goroutine 0 and those the runtime itself created (GC workers and
// the like): what is left is the program's own.
func countGoroutines(b []byte) int {
	n := 0
	inG, runtimeG := false, false
	end := func() {
		if inG && !runtimeG {
			n++
		}
		inG, runtimeG = false, false
	}
	for _, line := range splitLines(b) {
		if rest, ok := strings.CutPrefix(line, "goroutine "); ok && strings.HasSuffix(line, "]:") && strings.Contains(line, " [") {
			end()
			id, _, _ := strings.Cut(rest, " ")
			inG = id != "0"
			continue
		}
		if strings.HasPrefix(line, "created by runtime.") {
			runtimeG = true
		}
	}
	end()
	return n
}

func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, string(b[start:]))
	}
	return out
}

// waitFIFO waits until the agent has created its simulated sensor pipe.
func waitFIFO(ctx context.Context, p *agentProc, path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
			return nil
		}
		if err := p.alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return fmt.Errorf("the agent never created %s", path)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}
