package jobs

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jonboulle/clockwork"
)

type harness struct {
	svc    *fakeService
	dir    string
	cancel context.CancelFunc
	done   chan error
	r      *Runner
}

func startRunner(t *testing.T, svc *fakeService, dir string, handlers map[string]Handler, clock clockwork.Clock) *harness {
	t.Helper()
	r, err := New(Options{Thing: svc.thing, Transport: svc, StateDir: dir, Handlers: handlers, Clock: clock,
		RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{svc: svc, dir: dir, cancel: cancel, done: make(chan error, 1), r: r}
	go func() { h.done <- r.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t *testing.T) {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
		h.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func echo() Handler {
	return HandlerFunc(func(ctx context.Context, job Job, p *Progress) (map[string]string, error) {
		if err := p.Update(ctx, map[string]string{"step": "half"}); err != nil {
			return nil, err
		}
		return map[string]string{"said": "hello"}, nil
	})
}

func TestRunnerDispatch(t *testing.T) {
	svc := newFakeService(t)
	svc.Queue("ok-1", `{"operation":"echo"}`)
	svc.Queue("unknown-1", `{"operation":"format-disk"}`)
	svc.Queue("malformed-1", `["operation","echo"]`)
	svc.Queue("no-op-1", `{"steps":[]}`)
	svc.Queue("huge-1", `{"operation":"echo","pad":"`+strings.Repeat("x", 40<<10)+`"}`)
	svc.Queue("fails-1", `{"operation":"fail"}`)
	startRunner(t, svc, t.TempDir(), map[string]Handler{
		"echo": echo(),
		"fail": HandlerFunc(func(context.Context, Job, *Progress) (map[string]string, error) {
			return nil, errors.New("disk full\nreally")
		}),
	}, nil)
	for _, tc := range []struct {
		id, status string
		details    map[string]string
	}{
		{"ok-1", StatusSucceeded, map[string]string{"said": "hello"}},
		{"unknown-1", StatusRejected, map[string]string{"reason": `unknown operation "format-disk"`}},
		{"malformed-1", StatusRejected, map[string]string{"reason": "job document is not a JSON object: json: cannot unmarshal array into Go value of type struct { Operation *string \"json:\\\"operation\\\"\" }"}},
		{"no-op-1", StatusRejected, map[string]string{"reason": `job document has no "operation"`}},
		{"huge-1", StatusRejected, map[string]string{"reason": "job document is 40989 bytes, more than 32 KB"}},
		{"fails-1", StatusFailed, map[string]string{"reason": "disk full really"}},
	} {
		e := svc.waitStatus(t, tc.id)
		if e.status != tc.status {
			t.Errorf("%s: status %s, want %s", tc.id, e.status, tc.status)
		}
		if diff := cmp.Diff(tc.details, e.details); diff != "" {
			t.Errorf("%s: statusDetails (-want +got):\n%s", tc.id, diff)
		}
	}
	// Progress went out as IN_PROGRESS with the step timer and the version.
	svc.mu.Lock()
	defer svc.mu.Unlock()
	var sawStep bool
	for _, u := range svc.updates {
		if u.Status == StatusInProgress && u.StatusDetails["step"] == "half" {
			sawStep = true
			if u.StepTimeoutInMinutes != 10 || u.ExpectedVersion == 0 {
				t.Errorf("progress update %+v lacks step timeout or expected version", u)
			}
		}
	}
	if !sawStep {
		t.Error("no progress update")
	}
}

// blocker blocks until its ctx ends and reports why.
func blocker(started chan<- Job, why chan<- error) Handler {
	return HandlerFunc(func(ctx context.Context, job Job, p *Progress) (map[string]string, error) {
		started <- job
		<-ctx.Done()
		why <- context.Cause(ctx)
		return nil, ctx.Err()
	})
}

func TestRunnerCancel(t *testing.T) {
	svc := newFakeService(t)
	started, why := make(chan Job, 1), make(chan error, 1)
	dir := t.TempDir()
	startRunner(t, svc, dir, map[string]Handler{"block": blocker(started, why), "echo": echo()}, nil)
	svc.Queue("long-1", `{"operation":"block"}`)
	<-started
	svc.Queue("next-1", `{"operation":"echo"}`)
	svc.Cancel("long-1")
	if err := <-why; !errors.Is(err, ErrCanceled) {
		t.Errorf("cause = %v, want ErrCanceled", err)
	}
	if e := svc.waitStatus(t, "next-1"); e.status != StatusSucceeded {
		t.Errorf("next job %s", e.status)
	}
	if e := svc.Exec("long-1"); e.status != "CANCELED" {
		t.Errorf("canceled job became %s", e.status)
	}
}

func TestRunnerStepTimeout(t *testing.T) {
	svc := newFakeService(t)
	clock := clockwork.NewFakeClock()
	started, why := make(chan Job, 1), make(chan error, 1)
	startRunner(t, svc, t.TempDir(), map[string]Handler{"block": blocker(started, why)}, clock)
	svc.Queue("slow-1", `{"operation":"block"}`)
	<-started
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Minute)
	if err := <-why; !errors.Is(err, ErrStepTimeout) {
		t.Errorf("cause = %v", err)
	}
	e := svc.waitStatus(t, "slow-1")
	if e.status != StatusFailed || !strings.Contains(e.details["reason"], "step timed out") {
		t.Errorf("got %s %v", e.status, e.details)
	}
}

// A restart-agent job: the agent restarts (Run ends), a new runner on the
// same state dir resumes the job and finishes it without running it again.
func TestRunnerResumesAfterRestart(t *testing.T) {
	svc := newFakeService(t)
	dir := t.TempDir()
	restarts := 0
	var h1 *harness
	restart := func(context.Context) error { restarts++; h1.cancel(); return nil }
	handlers := map[string]Handler{"restart-agent": RestartAgent(restart)}
	h1 = startRunner(t, svc, dir, handlers, nil)
	svc.Queue("restart-1", `{"operation":"restart-agent"}`)
	if err := <-h1.done; err != nil {
		t.Fatal(err)
	}
	h1.done <- nil
	if e := svc.Exec("restart-1"); e.status != StatusInProgress || e.details["step"] != "restarting" {
		t.Fatalf("before restart: %s %v", e.status, e.details)
	}
	if _, err := os.Stat(filepath.Join(dir, "jobs", "inflight.json")); err != nil {
		t.Fatalf("in-flight job not persisted: %v", err)
	}
	startRunner(t, svc, dir, handlers, nil)
	e := svc.waitStatus(t, "restart-1")
	if e.status != StatusSucceeded || restarts != 1 {
		t.Errorf("after restart: %s %v, %d restarts", e.status, e.details, restarts)
	}
}

func TestRebootChecksBootID(t *testing.T) {
	for _, tc := range []struct {
		name       string
		newBoot    string
		wantStatus string
	}{
		{"rebooted", "boot-2", StatusSucceeded},
		{"did not reboot", "boot-1", StatusFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := newFakeService(t)
			dir := t.TempDir()
			boot := "boot-1"
			var h1 *harness
			handlers := map[string]Handler{"reboot": Reboot(func(context.Context) error { h1.cancel(); return nil },
				func() (string, error) { return boot, nil })}
			h1 = startRunner(t, svc, dir, handlers, nil)
			svc.Queue("reboot-1", `{"operation":"reboot"}`)
			<-h1.done
			h1.done <- nil
			boot = tc.newBoot
			startRunner(t, svc, dir, handlers, nil)
			if e := svc.waitStatus(t, "reboot-1"); e.status != tc.wantStatus {
				t.Errorf("status %s %v", e.status, e.details)
			}
		})
	}
}

func TestRunCommand(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to user nobody")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no user nobody")
	}
	svc := newFakeService(t)
	cmdOpts := CommandOptions{Allowed: []string{"/usr/bin/id", "/bin/sh"}, User: "nobody"}
	startRunner(t, svc, t.TempDir(), map[string]Handler{
		"run-command":  RunCommand(cmdOpts),
		"run-as-ghost": RunCommand(CommandOptions{Allowed: []string{"/usr/bin/id"}, User: "no-such-user-x"}),
		"run-as-root":  RunCommand(CommandOptions{Allowed: []string{"/usr/bin/id"}, User: "root"}),
	}, nil)
	svc.Queue("id-1", `{"operation":"run-command","command":["/usr/bin/id","-u"]}`)
	svc.Queue("shell-1", `{"operation":"run-command","command":"id -u; rm -rf /"}`)
	svc.Queue("notallowed-1", `{"operation":"run-command","command":["/bin/rm","-rf","/tmp/x"]}`)
	svc.Queue("ghost-1", `{"operation":"run-as-ghost","command":["/usr/bin/id"]}`)
	svc.Queue("root-1", `{"operation":"run-as-root","command":["/usr/bin/id"]}`)
	svc.Queue("fail-1", `{"operation":"run-command","command":["/bin/sh","-c","echo oops >&2; exit 3"]}`)
	for _, tc := range []struct{ id, status, key, want string }{
		{"id-1", StatusSucceeded, "stdout", "65534"},
		{"shell-1", StatusRejected, "reason", "cannot unmarshal string"},
		{"notallowed-1", StatusRejected, "reason", `command "/bin/rm" is not on the allow-list`},
		{"ghost-1", StatusFailed, "reason", "refusing to run as root"},
		{"root-1", StatusFailed, "reason", "is root; refusing"},
		{"fail-1", StatusFailed, "reason", "exit status 3"},
	} {
		e := svc.waitStatus(t, tc.id)
		if e.status != tc.status || !strings.Contains(e.details[tc.key], tc.want) {
			t.Errorf("%s: %s %v; want %s with %s containing %q", tc.id, e.status, e.details, tc.status, tc.key, tc.want)
		}
	}
	if e := svc.Exec("fail-1"); e.details["stderr"] != "oops" {
		t.Errorf("stderr %q", e.details["stderr"])
	}
}

// Canceling a run-command job kills the whole process group.
func TestRunCommandCancelKillsGroup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to user nobody")
	}
	svc := newFakeService(t)
	// A directory user nobody can write to (t.TempDir's parent is 0700).
	pidDir, err := os.MkdirTemp("", "jobs-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pidDir) })
	if err := os.Chmod(pidDir, 0o777); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(pidDir, "pid")
	startRunner(t, svc, t.TempDir(), map[string]Handler{
		"run-command": RunCommand(CommandOptions{Allowed: []string{"/bin/sh"}, User: "nobody"}),
	}, nil)
	// The shell starts a grandchild that would outlive a plain kill.
	svc.Queue("sleep-1", `{"operation":"run-command","command":["/bin/sh","-c","sleep 300 & echo $! > `+pidFile+`; wait"]}`)
	var pid string
	for start := time.Now(); pid == ""; {
		b, _ := os.ReadFile(pidFile)
		pid = strings.TrimSpace(string(b))
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no pid file: job %+v", svc.Exec("sleep-1"))
		}
		if pid == "" {
			time.Sleep(5 * time.Millisecond) // polling for a file the child writes
		}
	}
	svc.Cancel("sleep-1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			break // gone (or a zombie awaiting its reaper)
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %s still alive after cancel", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
