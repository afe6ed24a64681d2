package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/firstboot"
	"github.com/iotagent/iotagent/agent/localapi"
)

// Exit codes of every command: the table below is what --help, the README
// and the man page list.
const (
	exitOK          = 0
	exitFail        = 1
	exitUsage       = 2
	exitNoAgent     = 3
	exitNotProvided = 4
	exitRefused     = 5
)

var exitCodes = []struct {
	code int
	text string
}{
	{exitOK, "ok"},
	{exitFail, "failed (diag: a check FAILed; config validate: the config is invalid)"},
	{exitUsage, "usage or configuration: a bad command line, or the config file is missing or invalid"},
	{exitNoAgent, "the agent is not running, not answering, or its socket is not ours to open\n     (status, jobs list and ota status then print what the state dir says)"},
	{exitNotProvided, "not provided by the running agent (e.g. OTA is off in its config)"},
	{exitRefused, "refused for good by the cloud (provision: the template, its hook or the parameters)"},
}

// usageError is a bad command line.
type usageError struct {
	cmd  *command // nil: the command is unknown
	msg  string
	hint string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// configError is a config file that is missing, unreadable or invalid.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// exitError gives an error another exit code than its class would.
type exitError struct {
	code int
	err  error
	// shown: the command's own JSON output already says what failed
	// (diag's checks, config validate's problems), so --json prints no
	// error object after it.
	shown bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// hinted adds what to do about err.
type hinted struct {
	err  error
	hint string
}

func (e *hinted) Error() string { return e.err.Error() }
func (e *hinted) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hinted{err, hint} }

// retryableError marks an error worth trying again unchanged (no
// connection, no answer).
type retryableError struct{ err error }

func (e *retryableError) Error() string   { return e.err.Error() }
func (e *retryableError) Unwrap() error   { return e.err }
func (e *retryableError) Retryable() bool { return true }

// exitCode maps a command's error to the process exit code.
func exitCode(err error) int {
	var ee *exitError
	var ue *usageError
	var ce *configError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	case errors.Is(err, localapi.ErrNotProvided):
		return exitNotProvided
	case errors.Is(err, localapi.ErrNotRunning), errors.Is(err, localapi.ErrPermission), errors.Is(err, localapi.ErrTimeout):
		return exitNoAgent
	}
	return exitFail
}

// errorJSON is what a failed command prints on stdout under --json.
type errorJSON struct {
	Error     string `json:"error"`
	Code      int    `json:"code"` // the exit code
	Retryable bool   `json:"retryable"`
	Hint      string `json:"hint,omitempty"`
	// Offline is what the state dir says while the agent is not running
	// (status, jobs list, ota status).
	Offline any `json:"offline,omitempty"`
}

// describe is err as the user sees it: the message, exit code, whether
// trying again unchanged may help, and what to do.
func describe(c *command, err error) errorJSON {
	out := errorJSON{Error: err.Error(), Code: exitCode(err)}
	if c != nil && !strings.HasPrefix(out.Error, "iotagent") {
		out.Error = "iotagent " + c.name + ": " + out.Error
	}
	var r interface{ Retryable() bool }
	var ne net.Error
	switch {
	case errors.As(err, &r):
		out.Retryable = r.Retryable()
	case errors.As(err, &ne) && ne.Timeout():
		out.Retryable = true
	case errors.Is(err, localapi.ErrNotRunning), errors.Is(err, localapi.ErrTimeout):
		out.Retryable = true
	}
	var h *hinted
	var ue *usageError
	var ce *configError
	switch {
	case errors.As(err, &h):
		out.Hint = h.hint
	case errors.As(err, &ue):
		out.Hint = ue.hint
		if ue.cmd != nil && out.Hint == "" {
			out.Hint = fmt.Sprintf("usage: %s; iotagent help %s", ue.cmd.usage(), ue.cmd.name)
		}
	case errors.As(err, &ce):
		out.Hint = "check it with iotagent config validate (reference: " + configReference + ")"
	case errors.Is(err, localapi.ErrNotRunning):
		out.Hint = "systemctl status iotagent says why it is not running; for an agent run by hand, give this command the same --config and --state-dir (or --socket)"
	case errors.Is(err, localapi.ErrPermission):
		out.Hint = "run as root or as a member of the socket's group (localapi.group)"
	case errors.Is(err, localapi.ErrTimeout):
		out.Hint = "the agent is busy or hung: journalctl -u iotagent; a longer --timeout"
	}
	var off *offlineError
	if errors.As(err, &off) {
		out.Offline = off.report
	}
	return out
}

// report prints a failed command's error: always a message on stderr, and
// under --json an errorJSON on stdout.
func report(c *command, err error, asJSON bool, stdout, stderr io.Writer) {
	d := describe(c, err)
	var ee *exitError
	if asJSON && !(errors.As(err, &ee) && ee.shown) {
		_ = printJSON(stdout, d)
	}
	fmt.Fprintln(stderr, d.Error)
	var ue *usageError
	switch {
	case errors.As(err, &ue) && ue.cmd != nil:
		fmt.Fprintf(stderr, "Usage: %s\nRun \"iotagent help %s\" for its help.\n", ue.cmd.usage(), ue.cmd.name)
	case d.Hint != "" && !strings.Contains(d.Error, d.Hint):
		fmt.Fprintf(stderr, "hint: %s\n", d.Hint)
	}
}

// offlineError is the agent not running (err), with what the state dir
// says instead (report): printed as text by the command, or as the
// error object's "offline" under --json.
type offlineError struct {
	err    error
	report any
}

func (e *offlineError) Error() string { return e.err.Error() }
func (e *offlineError) Unwrap() error { return e.err }

// now is the CLI's clock; tests replace it.
var now = time.Now

// configFile is the config file the command reads: --config, else the one
// adopted at first boot (as run does), else the packaged default.
func (x *inv) configFile() string {
	if x.cfgExplicit {
		return x.cfgPath
	}
	if p := firstboot.ConfigPath(x.stateDirFlag()); p != "" {
		return p
	}
	return defaultConfig
}

// stateDirFlag is --state-dir, else the default state dir (for finding a
// config adopted at first boot before any config is read).
func (x *inv) stateDirFlag() string {
	if x.stateDir != "" {
		return absPath(x.stateDir)
	}
	return config.DefaultStateDir
}

// overrideStateDir applies --state-dir to a config being parsed.
func (x *inv) overrideStateDir(c *config.Config) {
	if x.stateDir != "" {
		c.StateDir = absPath(x.stateDir)
	}
}

// rawConfig reads the config file without validating it (status works
// even when, say, the root CA file is missing), with --state-dir applied.
// A config file that was not named and does not exist gives the defaults
// and ok false; one that was named and cannot be read is an error.
func (x *inv) rawConfig() (cfg config.Config, ok bool, err error) {
	path := x.configFile()
	data, err := config.ReadFile(path)
	if err != nil {
		if !x.cfgExplicit && errors.Is(err, os.ErrNotExist) {
			// The defaults, with the paths that follow the state dir
			// (identity, socket) following --state-dir.
			cfg, err = config.ParseWith([]byte("{}"), ".", x.overrideStateDir)
			return cfg, false, err
		}
		return config.Config{}, false, &configError{fmt.Errorf("config %s: %w", path, err)}
	}
	cfg, err = config.ParseWith(data, dirOf(path), x.overrideStateDir)
	if err != nil {
		return config.Config{}, false, &configError{fmt.Errorf("config %s:\n%w", path, err)}
	}
	return cfg, true, nil
}

// loadConfig reads and validates the config file with --state-dir and
// override (more flags) applied.
func (x *inv) loadConfig(override func(*config.Config)) (config.Config, error) {
	return loadConfigWith(x.configFile(), func(c *config.Config) {
		x.overrideStateDir(c)
		if override != nil {
			override(c)
		}
	})
}

// stateDirPath is the state dir: --state-dir, else state_dir from the
// config, else the default. A config file that was not named and does
// not parse gives the default (the systemd unit's firstboot must not
// fail on a broken packaged config it is about to replace).
func (x *inv) stateDirPath() (string, error) {
	if x.stateDir != "" {
		return absPath(x.stateDir), nil
	}
	cfg, _, err := x.rawConfig()
	if err != nil {
		if !x.cfgExplicit {
			return config.DefaultStateDir, nil
		}
		return "", err
	}
	if cfg.StateDir != "" {
		return cfg.StateDir, nil
	}
	return config.DefaultStateDir, nil
}

// client returns a local API client for the socket: --socket, else
// localapi.socket from the config, else the default.
func (x *inv) client() (*localapi.Client, error) {
	sock := x.socket
	if sock == "" {
		cfg, _, err := x.rawConfig()
		if err != nil {
			return nil, err
		}
		sock = cfg.LocalAPI.Socket
	}
	return localapi.NewClient(sock, x.timeout), nil
}

// get reads section name from the agent into v.
func (x *inv) get(name string, v any) error {
	c, err := x.client()
	if err != nil {
		return err
	}
	return c.Get(context.Background(), name, v)
}

// do runs action name on the agent.
func (x *inv) do(name string, body, v any) error {
	c, err := x.client()
	if err != nil {
		return err
	}
	return c.Do(context.Background(), name, body, v)
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func dirOf(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "."
	}
	return filepath.Dir(abs)
}
