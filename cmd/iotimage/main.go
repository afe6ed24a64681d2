// Command iotimage prepares a Raspberry Pi OS card image on a workstation
// so that the device installs iotagent and provisions itself at its first
// boot: it writes the .deb, the agent's configuration with the claim
// certificate, and the first-boot hooks (cloud-init's NoCloud files for
// Trixie, firstrun.sh for Bookworm) onto the image's FAT boot partition,
// without root and without mounting anything. It is a workstation tool and
// never part of the device binary. See `iotimage help` and
// docs/flashing.md.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/iotagent/iotagent/internal/version"
)

// Exit codes, as iotagent's (usage 2, refused 5).
const (
	exitOK      = 0
	exitFail    = 1
	exitUsage   = 2
	exitRefused = 5
)

var exitCodes = []struct {
	code int
	text string
}{
	{exitOK, "ok"},
	{exitFail, "failed: reading or writing the image, card or directory"},
	{exitUsage, "usage or input: a bad command line, or a config, certificate, key, .deb\n     or setting that is not usable (every problem is listed)"},
	{exitRefused, "refused: the target is not what was expected (not an MBR disk image, no\n     FAT partition, first-boot files someone else wrote, a card not confirmed)"},
}

// command is one entry of the command table (after iotagent's).
type command struct {
	name, args, short, long string
	setup                   func(fs *flag.FlagSet) func(x *inv) error
}

// inv is one invocation: the parsed flags' common part and the output.
type inv struct {
	json           bool
	stdin          io.Reader
	stdout, stderr io.Writer
}

var commands []*command

func init() {
	commands = []*command{
		{name: "prepare", short: "write iotagent and its first-boot hooks onto a Raspberry Pi OS image, card or boot partition", long: prepareText, setup: prepareSetup},
		{name: "version", short: "print the version", setup: func(*flag.FlagSet) func(*inv) error {
			return func(x *inv) error {
				if x.json {
					return printJSON(x.stdout, map[string]string{"version": version.String()})
				}
				fmt.Fprintln(x.stdout, "iotimage", version.String())
				return nil
			}
		}},
	}
}

func main() {
	os.Exit(exitCode(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)))
}

// usageError is a bad command line.
type usageError struct {
	cmd *command
	msg string
}

func (e *usageError) Error() string { return e.msg }

// inputError is input that is not usable: a config, certificate, key,
// package or setting (exit 2).
type inputError struct{ err error }

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// refusedError is a target iotimage will not write (exit 5).
type refusedError struct {
	err  error
	hint string
}

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// hinted adds what to do about err.
type hinted struct {
	err  error
	hint string
}

func (e *hinted) Error() string { return e.err.Error() }
func (e *hinted) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ue *usageError
	var ie *inputError
	var re *refusedError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue), errors.As(err, &ie):
		return exitUsage
	case errors.As(err, &re):
		return exitRefused
	}
	return exitFail
}

// errorJSON is what a failed command prints on stdout under --json.
type errorJSON struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
	Hint  string `json:"hint,omitempty"`
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	asJSON := false
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" || a == "-json" || a == "--json=true" {
			asJSON = true
		}
	}
	c, err := dispatch(args, stdin, stdout, stderr)
	if err != nil && exitCode(err) != exitOK {
		d := errorJSON{Error: err.Error(), Code: exitCode(err)}
		if !strings.HasPrefix(d.Error, "iotimage") {
			name := "iotimage"
			if c != nil {
				name += " " + c.name
			}
			d.Error = name + ": " + d.Error
		}
		var h *hinted
		var re *refusedError
		var ue *usageError
		switch {
		case errors.As(err, &re):
			d.Hint = re.hint
		case errors.As(err, &h):
			d.Hint = h.hint
		case errors.As(err, &ue) && ue.cmd != nil:
			d.Hint = "usage: " + ue.cmd.usage() + "; iotimage help " + ue.cmd.name
		}
		if asJSON {
			_ = printJSON(stdout, d)
		}
		fmt.Fprintln(stderr, d.Error)
		if d.Hint != "" {
			fmt.Fprintln(stderr, "hint:", d.Hint)
		}
	}
	return err
}

func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) (*command, error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, globalUsage())
		return nil, &usageError{msg: "iotimage: no command given"}
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			if c := find(args[1]); c != nil {
				fmt.Fprint(stdout, c.help())
				return nil, nil
			}
			return nil, &usageError{msg: fmt.Sprintf("iotimage help: unknown command %q", args[1])}
		}
		fmt.Fprint(stdout, globalUsage())
		return nil, nil
	}
	c := find(args[0])
	if c == nil {
		return nil, &usageError{msg: fmt.Sprintf("iotimage: unknown command %q (iotimage help lists them)", args[0])}
	}
	fs, body, x := c.flagSet()
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, c.help())
			return c, nil
		}
		return c, &usageError{cmd: c, msg: fmt.Sprintf("iotimage %s: %v", c.name, err)}
	}
	if fs.NArg() > 0 {
		return c, &usageError{cmd: c, msg: fmt.Sprintf("iotimage %s: unexpected argument %q", c.name, fs.Arg(0))}
	}
	x.stdin, x.stdout, x.stderr = stdin, stdout, stderr
	return c, body(x)
}

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (c *command) flagSet() (*flag.FlagSet, func(*inv) error, *inv) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	x := &inv{}
	fs.BoolVar(&x.json, "json", false, "print JSON instead of text (errors too: {error, code, hint})")
	return fs, c.setup(fs), x
}

func (c *command) usage() string {
	s := "iotimage " + c.name + " [flags]"
	if c.args != "" {
		s += " " + c.args
	}
	return s
}

func (c *command) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n%s\n", c.usage(), strings.TrimSpace(firstNonEmpty(c.long, c.short)))
	fs, _, _ := c.flagSet()
	b.WriteString("\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n      %s", strings.ReplaceAll(usage, "\n", "\n      "))
		if d := f.DefValue; d != "" && d != "false" {
			fmt.Fprintf(&b, " (default %s)", d)
		}
		b.WriteString("\n")
	})
	b.WriteString(exitCodesHelp())
	return b.String()
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func globalUsage() string {
	var b strings.Builder
	b.WriteString("iotimage: prepares Raspberry Pi OS card images for iotagent (on a workstation).\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-20s %s\n", "iotimage "+c.name, c.short)
	}
	fmt.Fprintf(&b, "  %-20s %s\n", "iotimage help [CMD]", "this text, or a command's flags")
	b.WriteString("\nEvery command takes -h and --json. From a blank card to a reporting device:\ndocs/flashing.md.\n")
	b.WriteString(exitCodesHelp())
	return b.String()
}

func exitCodesHelp() string {
	var b strings.Builder
	b.WriteString("\nExit codes:\n")
	for _, e := range exitCodes {
		fmt.Fprintf(&b, "  %d  %s\n", e.code, e.text)
	}
	return b.String()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
