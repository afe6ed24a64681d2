package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/internal/version"
	"github.com/iotagent/iotagent/ota"
)

const otaUsage = `usage: iotagent ota status|init|prestart [flags]`

func otaCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef(otaUsage)
	}
	switch args[0] {
	case "status":
		return sectionCmd("ota status", "ota status [flags]", "OTA slots and versions of the running agent, as JSON.", localapi.SectionOTA)(args[1:], stdout, stderr)
	case "init":
		return otaInitCmd(args[1:], stdout, stderr)
	case "prestart":
		return otaPrestartCmd(args[1:], stdout, stderr)
	}
	return usagef(otaUsage)
}

// stateDirFlags parses --state-dir, or takes state_dir from --config.
type stateDirFlags struct {
	fs                *flag.FlagSet
	stateDir, cfgPath *string
}

func newStateDirFlags(name, synopsis, text string, stderr io.Writer) stateDirFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := stateDirFlags{
		fs:       fs,
		stateDir: fs.String("state-dir", "", "the agent's state dir (default: state_dir from --config, else "+config.DefaultStateDir+")"),
		cfgPath:  fs.String("config", defaultConfig, "config file, read only for state_dir"),
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: iotagent %s\n\n%s\n\nFlags:\n", synopsis, text)
		fs.PrintDefaults()
	}
	return f
}

func (f stateDirFlags) parse(args []string) (string, error) {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", &usageError{err.Error()}
	}
	if f.fs.NArg() > 0 {
		return "", usagef("iotagent %s: unexpected argument %q", f.fs.Name(), f.fs.Arg(0))
	}
	if *f.stateDir != "" {
		return absPath(*f.stateDir), nil
	}
	if data, err := config.ReadFile(*f.cfgPath); err == nil {
		if c, err := config.Parse(data, dirOf(*f.cfgPath)); err == nil && c.StateDir != "" {
			return c.StateDir, nil
		}
	}
	return config.DefaultStateDir, nil
}

const otaInitText = `Creates STATE/ota with this binary (or --binary) in slot a as the
committed version, and the symlinks the systemd unit starts the agent
through: STATE/ota/current/iotagent (ExecStart) and
STATE/ota/committed/iotagent (ExecStartPre, "ota prestart"). When STATE/ota
exists it only repairs the symlinks, so it is safe to run before every
start; with --upgrade (the package's postinst) it also installs the binary
into the committed slot when no update is in progress and the version
differs.`

func otaInitCmd(args []string, stdout, stderr io.Writer) error {
	f := newStateDirFlags("ota init", "ota init [flags]", otaInitText, stderr)
	binary := f.fs.String("binary", "", "the binary to install (default: this one)")
	ver := f.fs.String("version", version.Version, "its version")
	upgrade := f.fs.Bool("upgrade", false, "install the binary into the committed slot if it is another version (package upgrade)")
	stateDir, err := f.parse(args)
	if err != nil {
		return err
	}
	if *binary == "" {
		if *binary, err = os.Executable(); err != nil {
			return fmt.Errorf("ota init: %w", err)
		}
	}
	if *upgrade {
		err = ota.Upgrade(stateDir, *binary, *ver)
	} else {
		err = ota.Init(stateDir, *binary, *ver)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ota: %s ready (%s)\n", ota.NewLayout(stateDir).Dir, *ver)
	return nil
}

const otaPrestartText = `Decides which slot the agent starts from. The systemd unit runs it before
every start from the committed (known-good) binary:
ExecStartPre=STATE/ota/committed/iotagent ota prestart. While a new version
is on trial it counts the start and rolls back when the new version
recorded a failure, cannot run on this CPU, or used up its starts; it
repairs the symlinks in every case. Without OTA state it does nothing.`

func otaPrestartCmd(args []string, stdout, stderr io.Writer) error {
	f := newStateDirFlags("ota prestart", "ota prestart [flags]", otaPrestartText, stderr)
	stateDir, err := f.parse(args)
	if err != nil {
		return err
	}
	d, err := ota.PreStart(stateDir, time.Now())
	if err != nil {
		return err
	}
	switch {
	case d.RolledBack:
		fmt.Fprintf(stdout, "ota prestart: rolled back to slot %s: %s\n", d.Slot, d.Reason)
	case d.Trial:
		fmt.Fprintf(stdout, "ota prestart: slot %s on trial, start %d\n", d.Slot, d.Start)
	case d.Reason != "":
		fmt.Fprintf(stdout, "ota prestart: slot %s: %s\n", d.Slot, d.Reason)
	case d.Slot != "":
		fmt.Fprintf(stdout, "ota prestart: slot %s\n", d.Slot)
	default:
		fmt.Fprintln(stdout, "ota prestart: no OTA state")
	}
	return nil
}
