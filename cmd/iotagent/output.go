package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
)

// Exit codes of every command (documented in usage and the README).
const (
	exitOK          = 0 // success; diag: no FAIL (WARNs allowed)
	exitFail        = 1 // the command failed; diag: at least one FAIL
	exitUsage       = 2 // bad command line
	exitNoAgent     = 3 // the agent is not running, not answering, or its socket is not ours to open
	exitNotProvided = 4 // the running agent does not provide this (e.g. jobs before the jobs service)
)

// usageError is a bad command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitError carries an exit code for an error already explained on output.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode maps a command's error to the process exit code.
func exitCode(err error) int {
	var ee *exitError
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, localapi.ErrNotProvided):
		return exitNotProvided
	case errors.Is(err, localapi.ErrNotRunning), errors.Is(err, localapi.ErrPermission), errors.Is(err, localapi.ErrTimeout):
		return exitNoAgent
	}
	return exitFail
}

// now is the CLI's clock; tests replace it.
var now = time.Now

// common are the flags every command that talks to the agent has.
type common struct {
	fs      *flag.FlagSet
	json    *bool
	socket  *string
	cfgPath *string
	timeout *time.Duration
}

// newFlags returns a flag set named name with --json, --socket, --config
// and --timeout, whose -h prints usage (a one-line synopsis plus text).
func newFlags(name, synopsis, text string, stderr io.Writer) common {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := common{
		fs:      fs,
		json:    fs.Bool("json", false, "print JSON instead of text"),
		socket:  fs.String("socket", "", "the agent's local API socket (default: localapi.socket from --config, else "+localapi.DefaultSocket+")"),
		cfgPath: fs.String("config", defaultConfig, "config file (for the socket path and offline work)"),
		timeout: fs.Duration("timeout", 10*time.Second, "give up on an agent that does not answer after this long"),
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: iotagent %s\n\n%s\n\nFlags:\n", synopsis, text)
		fs.PrintDefaults()
		fmt.Fprint(stderr, exitCodesText)
	}
	return c
}

const exitCodesText = `
Exit codes: 0 ok, 1 failed (diag: a check FAILed), 2 usage, 3 agent not
running or not answering, 4 not provided by the running agent.
`

// parse parses args and refuses positional arguments beyond max.
func (c common) parse(args []string, max int) error {
	if err := c.fs.Parse(reorder(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if c.fs.NArg() > max {
		return usagef("iotagent %s: unexpected argument %q", c.fs.Name(), c.fs.Arg(max))
	}
	return nil
}

// config reads the config file without validating it (status works even
// when, say, the root CA file is missing); ok is false when it cannot.
func (c common) config() (cfg config.Config, ok bool) {
	data, err := config.ReadFile(*c.cfgPath)
	if err != nil {
		return config.Default(), false
	}
	cfg, err = config.Parse(data, dirOf(*c.cfgPath))
	if err != nil {
		return config.Default(), false
	}
	return cfg, true
}

// client returns a local API client for the socket the flags name.
func (c common) client() *localapi.Client {
	sock := *c.socket
	if sock == "" {
		if cfg, ok := c.config(); ok && cfg.LocalAPI.Socket != "" {
			sock = cfg.LocalAPI.Socket
		}
	}
	return localapi.NewClient(sock, *c.timeout)
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
