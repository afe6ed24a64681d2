package main

import (
	"encoding/json"
	"flag"
	"fmt"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/defender"
	"github.com/iotagent/iotagent/agent/localapi"
)

const defenderReportText = `Asks the running agent to send a Device Defender report now. With --dry-run,
prints the report this machine would send (from /proc and the config),
without the agent and without sending it or using up a report id.`

func defenderReportSetup(fs *flag.FlagSet) runFunc {
	dry := fs.Bool("dry-run", false, "print the report instead of sending it")
	return func(x *inv) error {
		if !*dry {
			var out any
			if err := x.do(localapi.ActionDefenderReport, nil, &out); err != nil {
				return err
			}
			if x.json {
				return printJSON(x.stdout, out)
			}
			fmt.Fprintln(x.stdout, "defender report sent")
			return nil
		}
		return defenderDryRun(x)
	}
}

// defenderDryRun prints the report this machine would send: JSON, with or
// without --json.
func defenderDryRun(x *inv) error {
	cfg, err := x.loadConfig(nil)
	if err != nil {
		return err
	}
	b, err := agent.DefenderDryRun(cfg)
	if err != nil {
		return err
	}
	if cfg.Defender.Format == defender.FormatCBOR {
		// CBOR is binary: show it decoded, with its size on the wire.
		r, err := defender.DecodeReport(defender.FormatCBOR, b)
		if err != nil {
			return err
		}
		fmt.Fprintf(x.stderr, "CBOR report, %d bytes on the wire; shown decoded:\n", len(b))
		return printJSON(x.stdout, r)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return printJSON(x.stdout, v)
}
