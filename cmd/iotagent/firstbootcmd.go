package main

import (
	"flag"
	"fmt"
	"os/user"
	"strconv"

	"github.com/iotagent/iotagent/agent/firstboot"
)

const firstbootText = `Adopts a configuration dropped on the boot partition (config.json and the
files it names, e.g. claim.crt and claim.key) into the state dir: copies
them with mode 0600 owned by --user, checks that the configuration
validates there, and removes them from the boot partition. A failure leaves
the files in place and records why for "iotagent status". Nothing to adopt
is not an error. The systemd unit runs this as root before the agent
(ExecStartPre=+), which then uses STATE/firstboot/config.json.`

// firstbootResult is firstboot's --json answer.
type firstbootResult struct {
	BootDir string `json:"boot_dir"`
	Adopted string `json:"adopted,omitempty"` // the adopted config; "" when there was nothing to adopt
}

func firstbootSetup(fs *flag.FlagSet) runFunc {
	bootDir := fs.String("boot-dir", firstboot.DefaultBootDir, "where the files are dropped")
	owner := fs.String("user", "", `owner of the adopted files (e.g. "iotagent"); "" keeps the caller`)
	return func(x *inv) error {
		// The config to adopt is on the boot partition: the state dir
		// comes from --state-dir, else the packaged config, else the default.
		stateDir, err := x.stateDirPath()
		if err != nil {
			return err
		}
		uid, gid := -1, -1
		if *owner != "" {
			u, err := user.Lookup(*owner)
			if err != nil {
				return fmt.Errorf("user %s: %w", *owner, err)
			}
			uid, _ = strconv.Atoi(u.Uid)
			gid, _ = strconv.Atoi(u.Gid)
		}
		path, err := firstboot.Adopt(*bootDir, stateDir, uid, gid)
		if err != nil {
			return err
		}
		if x.json {
			return printJSON(x.stdout, firstbootResult{BootDir: *bootDir, Adopted: path})
		}
		if path == "" {
			fmt.Fprintf(x.stdout, "firstboot: nothing in %s to adopt\n", *bootDir)
			return nil
		}
		fmt.Fprintf(x.stdout, "firstboot: adopted %s into %s\n", *bootDir, path)
		return nil
	}
}
