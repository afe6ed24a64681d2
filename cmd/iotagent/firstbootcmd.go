package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"strconv"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/firstboot"
)

const firstbootText = `Adopts a configuration dropped on the boot partition (config.json and the
files it names, e.g. claim.crt and claim.key) into the state dir: copies
them with mode 0600 owned by --user, checks that the configuration
validates there, and removes them from the boot partition. A failure leaves
the files in place and records why for "iotagent status". Nothing to adopt
is not an error. The systemd unit runs this as root before the agent
(ExecStartPre=+), which then uses STATE/firstboot/config.json.`

func firstbootCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("firstboot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bootDir := fs.String("boot-dir", firstboot.DefaultBootDir, "where the files are dropped")
	stateDir := fs.String("state-dir", config.DefaultStateDir, "the agent's state dir")
	owner := fs.String("user", "", `owner of the adopted files (e.g. "iotagent"); "" keeps the caller`)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: iotagent firstboot [flags]\n\n%s\n\nFlags:\n", firstbootText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	uid, gid := -1, -1
	if *owner != "" {
		u, err := user.Lookup(*owner)
		if err != nil {
			return fmt.Errorf("firstboot: user %s: %w", *owner, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	path, err := firstboot.Adopt(*bootDir, *stateDir, uid, gid)
	if err != nil {
		return fmt.Errorf("firstboot: %w", err)
	}
	if path == "" {
		fmt.Fprintf(stdout, "firstboot: nothing in %s to adopt\n", *bootDir)
		return nil
	}
	fmt.Fprintf(stdout, "firstboot: adopted %s into %s\n", *bootDir, path)
	return nil
}
