package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
)

// command is one entry of the command table: every command and group of
// iotagent goes through it, so that help, flags, --json, usage errors and
// exit codes work the same everywhere (after cmd/go/internal/base.Command).
type command struct {
	name  string // the path after "iotagent": "ota status"
	args  string // the positional arguments in the usage line: "[FILE]"
	short string // one line for the command list
	long  string // the help text
	// shared are the flags the command takes from the shared set.
	shared shared
	// minArgs and maxArgs bound the positional arguments (maxArgs -1: any).
	minArgs, maxArgs int
	// setup defines the command's own flags on fs and returns its body.
	// nil for a group.
	setup func(fs *flag.FlagSet) runFunc
	sub   []*command // a group's subcommands
}

// runFunc is a command's body, called with the flags parsed.
type runFunc func(x *inv) error

// shared is a set of the flags several commands take.
type shared uint8

const (
	// withConfig: --config and --state-dir, as run takes them: the config
	// file, and the state dir that overrides its state_dir.
	withConfig shared = 1 << iota
	// withAgent: --socket and --timeout, for the local API.
	withAgent
	// withJSON: --json.
	withJSON

	asksAgent  = withConfig | withAgent | withJSON // a command that asks the agent
	readsState = withConfig | withJSON             // a command that reads the config or state dir
)

// inv is one invocation of a command: its parsed shared flags, its
// positional arguments and its output.
type inv struct {
	cmd            *command
	fs             *flag.FlagSet
	args           []string
	stdout, stderr io.Writer

	json        bool
	cfgPath     string
	cfgExplicit bool   // --config was given
	stateDir    string // --state-dir as given ("" when not)
	socket      string
	timeout     time.Duration
}

// usage is the command's usage line, without "Usage: ".
func (c *command) usage() string {
	s := "iotagent " + c.name
	if len(c.sub) > 0 {
		return s + " COMMAND [flags]"
	}
	if c.shared != 0 || c.setup != nil {
		s += " [flags]"
	}
	if c.args != "" {
		s += " " + c.args
	}
	return s
}

// leaf is the last word of the command's name.
func (c *command) leaf() string { return c.name[strings.LastIndexByte(c.name, ' ')+1:] }

// flagSet returns a fresh flag set with the command's flags, and its body.
func (c *command) flagSet() (*flag.FlagSet, runFunc, *inv) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by run
	fs.Usage = func() {}
	x := &inv{cmd: c, fs: fs}
	if c.shared&withConfig != 0 {
		fs.Func("config", "config `FILE` (default: the one adopted at first boot in STATE/firstboot, else "+defaultConfig+")", func(s string) error {
			x.cfgPath, x.cfgExplicit = s, true
			return nil
		})
		fs.StringVar(&x.stateDir, "state-dir", "", "the agent's state `DIR` (default: state_dir from the config, else "+config.DefaultStateDir+")")
	}
	if c.shared&withAgent != 0 {
		fs.StringVar(&x.socket, "socket", "", "the agent's local API `SOCKET` (default: localapi.socket from the config, else "+localapi.DefaultSocket+")")
		fs.DurationVar(&x.timeout, "timeout", 10*time.Second, "give up on an agent that does not answer after this long")
	}
	if c.shared&withJSON != 0 {
		fs.BoolVar(&x.json, "json", false, "print JSON instead of text (errors too: {error, code, retryable, hint})")
	}
	var body runFunc
	if c.setup != nil {
		body = c.setup(fs)
	}
	return fs, body, x
}

// find returns the command at path (its words), or nil and how far it got.
func find(path []string) (*command, int) {
	var cur *command
	list := commands
	for i, w := range path {
		var next *command
		for _, c := range list {
			if c.leaf() == w {
				next = c
			}
		}
		if next == nil {
			return cur, i
		}
		cur, list = next, next.sub
	}
	return cur, len(path)
}

// run runs the command line args (without the program name).
func run(args []string, stdout, stderr io.Writer) error {
	asJSON := wantsJSON(args)
	c, err := dispatch(args, stdout, stderr)
	if err != nil && exitCode(err) != exitOK {
		report(c, err, asJSON, stdout, stderr)
	}
	return err
}

// dispatch finds the command args name and runs it.
func dispatch(args []string, stdout, stderr io.Writer) (*command, error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, globalUsage())
		return nil, &usageError{msg: "iotagent: no command given", hint: "iotagent help lists the commands"}
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		return nil, helpCmd(args[1:], stdout)
	}
	c, n := find(args)
	if c == nil {
		return nil, &usageError{msg: fmt.Sprintf("iotagent: unknown command %q", args[0]), hint: "iotagent help lists the commands"}
	}
	return c, c.invoke(args[n:], stdout, stderr)
}

// invoke runs c with the arguments after its name.
func (c *command) invoke(rest []string, stdout, stderr io.Writer) error {
	if len(c.sub) > 0 {
		switch {
		case len(rest) == 0:
			return &usageError{cmd: c, msg: fmt.Sprintf("iotagent %s: missing the command: %s", c.name, subNames(c))}
		case isHelp(rest[0]):
			fmt.Fprint(stdout, c.help())
			return nil
		case strings.HasPrefix(rest[0], "-"):
			return &usageError{cmd: c, msg: fmt.Sprintf("iotagent %s: missing the command before the flag %s: %s", c.name, rest[0], subNames(c))}
		}
		return &usageError{cmd: c, msg: fmt.Sprintf("iotagent %s: unknown subcommand %q (want %s)", c.name, rest[0], subNames(c))}
	}
	fs, body, x := c.flagSet()
	if err := fs.Parse(flagsFirst(fs, rest)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, c.help())
			return nil
		}
		msg := err.Error()
		if f, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
			msg = "unknown flag -" + strings.TrimLeft(f, "-") // as it was typed, or its - form
			if strings.Contains(strings.Join(rest, " "), "--"+strings.TrimLeft(f, "-")) {
				msg = "unknown flag --" + strings.TrimLeft(f, "-")
			}
		}
		return &usageError{cmd: c, msg: fmt.Sprintf("iotagent %s: %s", c.name, msg)}
	}
	x.args, x.stdout, x.stderr = fs.Args(), stdout, stderr
	switch {
	case len(x.args) < c.minArgs:
		return &usageError{cmd: c, msg: fmt.Sprintf("iotagent %s: missing %s", c.name, c.args)}
	case c.maxArgs >= 0 && len(x.args) > c.maxArgs:
		return &usageError{cmd: c, msg: fmt.Sprintf("iotagent %s: unexpected argument %q", c.name, x.args[c.maxArgs])}
	}
	if !x.cfgExplicit {
		x.cfgPath = defaultConfig
	}
	return body(x)
}

// wantsJSON reports whether the command line asks for JSON, before the
// flags are parsed (a usage error is reported as JSON too).
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		}
	}
	return false
}

func subNames(c *command) string {
	var names []string
	for _, s := range c.sub {
		names = append(names, s.leaf())
	}
	return strings.Join(names, ", ")
}

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }

// helpCmd is "iotagent help [COMMAND...]".
func helpCmd(path []string, stdout io.Writer) error {
	if len(path) == 0 {
		fmt.Fprint(stdout, globalUsage())
		return nil
	}
	c, n := find(path)
	if n < len(path) {
		return &usageError{msg: fmt.Sprintf("iotagent help: unknown command %q", strings.Join(path, " ")), hint: "iotagent help lists the commands"}
	}
	fmt.Fprint(stdout, c.help())
	return nil
}

// help is the command's help text.
func (c *command) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n", c.usage())
	text := c.long
	if text == "" {
		text = c.short
	}
	fmt.Fprintf(&b, "%s\n", strings.TrimSpace(text))
	if len(c.sub) > 0 {
		b.WriteString("\nCommands:\n")
		for _, s := range c.sub {
			fmt.Fprintf(&b, "  %-36s %s\n", strings.TrimPrefix(s.usage(), "iotagent "), s.short)
		}
		fmt.Fprintf(&b, "\nRun \"iotagent help %s COMMAND\" for a command's flags.\n", c.name)
	} else if fs, _, _ := c.flagSet(); hasFlags(fs) {
		b.WriteString("\nFlags:\n")
		b.WriteString(flagHelp(fs))
	}
	b.WriteString(exitCodesHelp)
	return b.String()
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// flagHelp lists fs's flags with two dashes, as the commands are shown.
func flagHelp(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n      %s", strings.ReplaceAll(usage, "\n", "\n      "))
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" && d != "map[]" {
			fmt.Fprintf(&b, " (default %s)", d)
		}
		b.WriteString("\n")
	})
	return b.String()
}

// leaves lists every runnable command, depth first in table order.
func leaves() []*command {
	var out []*command
	var walk func([]*command)
	walk = func(cs []*command) {
		for _, c := range cs {
			if len(c.sub) > 0 {
				walk(c.sub)
				continue
			}
			out = append(out, c)
		}
	}
	walk(commands)
	return out
}

// globalUsage is "iotagent help", generated from the table.
func globalUsage() string {
	var b strings.Builder
	b.WriteString("iotagent: connects this device to AWS IoT Core (or iotsim).\n\nUsage:\n")
	for _, c := range leaves() {
		line := "iotagent " + c.name
		if c.args != "" {
			line += " " + c.args
		}
		fmt.Fprintf(&b, "  %-42s %s\n", line, c.short)
	}
	fmt.Fprintf(&b, "  %-42s %s\n", "iotagent help [COMMAND]", "this text, or a command's flags")
	b.WriteString(`
Every command takes -h (its help); every command that prints takes --json.
Every command that reads the config or the state dir takes run's --config
and --state-dir; the ones that talk to the agent take --socket and --timeout.
`)
	b.WriteString(exitCodesHelp)
	b.WriteString("\nThe configuration reference: " + configReference + " (configs/README.md in the\nsource tree); man iotagent.\n")
	return b.String()
}

// exitCodesHelp is the exit code table, as every help text ends.
var exitCodesHelp = "\nExit codes:\n" + exitCodesTable()

func exitCodesTable() string {
	var b strings.Builder
	for _, e := range exitCodes {
		fmt.Fprintf(&b, "  %d  %s\n", e.code, e.text)
	}
	return b.String()
}

// commandNames are the top-level command names, for the completions.
func commandNames() []string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return append(names, "help")
}

// flagNames are c's flags (without dashes), sorted, for the completions.
func (c *command) flagNames() []string {
	seen := map[string]bool{"help": true}
	var walk func(*command)
	walk = func(c *command) {
		if len(c.sub) > 0 {
			for _, s := range c.sub {
				walk(s)
			}
			return
		}
		fs, _, _ := c.flagSet()
		fs.VisitAll(func(f *flag.Flag) { seen[f.Name] = true })
	}
	walk(c)
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// flagsFirst moves the flags of fs in args before the arguments, so that
// "validate FILE --json" parses like "validate --json FILE", knowing from
// fs which flags take a value.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(append(flags, pos...), args[i+1:]...)
		case strings.HasPrefix(a, "-") && a != "-":
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !(ok && b.IsBoolFlag()) && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}
