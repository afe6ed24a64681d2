package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CommandOptions configure the "run-command" handler.
type CommandOptions struct {
	// Allowed lists the absolute paths of the only programs a job may run.
	Allowed []string
	// User is the unprivileged user the commands run as. Required: the
	// handler refuses to run anything when it is empty, missing or root.
	User string
	// lookup finds the user; nil means os/user.Lookup. Tests replace it.
	lookup func(string) (*user.User, error)
}

// commandDoc is the "run-command" job document; command is argv, run
// directly, never through a shell:
//
//	{"operation":"run-command","command":["/usr/bin/systemctl","restart","nginx"]}
type commandDoc struct {
	Command []string `json:"command"`
}

// RunCommand returns the "run-command" handler. The process runs in its
// own process group as o.User with a minimal environment; when the job is
// canceled or times out the whole group is killed. stdout and stderr
// (their last 1024 characters) go to statusDetails.
func RunCommand(o CommandOptions) Handler {
	if o.lookup == nil {
		o.lookup = user.Lookup
	}
	return HandlerFunc(func(ctx context.Context, job Job, p *Progress) (map[string]string, error) {
		var d commandDoc
		if err := json.Unmarshal(job.Document, &d); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrReject, err)
		}
		if len(d.Command) == 0 || d.Command[0] == "" {
			return nil, fmt.Errorf("%w: command: missing (an array: program and arguments)", ErrReject)
		}
		for _, a := range d.Command {
			if strings.ContainsRune(a, 0) {
				return nil, fmt.Errorf("%w: command: an argument contains NUL", ErrReject)
			}
		}
		if !slices.Contains(o.Allowed, d.Command[0]) {
			return nil, fmt.Errorf("%w: command %q is not on the allow-list", ErrReject, d.Command[0])
		}
		cred, err := credential(o)
		if err != nil {
			return nil, err
		}
		if job.Resumed && job.Marker == "running" {
			return nil, errors.New("interrupted by an agent restart; not run again")
		}
		if err := p.Mark("running"); err != nil {
			return nil, err
		}
		if err := p.Update(ctx, map[string]string{"step": "running", "command": d.Command[0]}); err != nil {
			return nil, err
		}
		var stdout, stderr tail
		cmd := exec.CommandContext(ctx, d.Command[0], d.Command[1:]...)
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		err = cmd.Run()
		details := map[string]string{"stdout": stdout.String(), "stderr": stderr.String()}
		for k, v := range details {
			if v == "" {
				delete(details, k)
			}
		}
		if ctx.Err() != nil {
			return details, context.Cause(ctx)
		}
		if err != nil {
			return details, fmt.Errorf("%s: %w", d.Command[0], err)
		}
		details["exit_code"] = "0"
		return details, nil
	})
}

// credential resolves the configured user, refusing root and a missing
// user rather than falling back to the agent's own identity.
func credential(o CommandOptions) (*syscall.Credential, error) {
	if o.User == "" {
		return nil, errors.New("no run-command user is configured; refusing to run as the agent's user")
	}
	u, err := o.lookup(o.User)
	if err != nil {
		return nil, fmt.Errorf("run-command user %q: %w; refusing to run as root", o.User, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("run-command user %q has no numeric uid/gid", o.User)
	}
	if uid == 0 {
		return nil, fmt.Errorf("run-command user %q is root; refusing", o.User)
	}
	// Only root may set groups; anyone else keeps its own and setuid fails
	// (EPERM) unless it is that user already.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: os.Getuid() != 0}, nil
}

// tail keeps the last 1024 bytes written.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4*maxDetailValue {
		t.b = append(t.b[:0], t.b[len(t.b)-maxDetailValue:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	s := strings.TrimSpace(string(t.b))
	if len(s) > maxDetailValue {
		s = s[len(s)-maxDetailValue:]
	}
	return s
}
