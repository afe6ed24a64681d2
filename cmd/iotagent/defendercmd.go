package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/defender"
	"github.com/iotagent/iotagent/agent/localapi"
)

func defenderCmd(args []string, stdout, stderr io.Writer) error {
	c := newFlags("defender report", "defender report [--dry-run] [flags]",
		"Asks the running agent to send a Device Defender report now. With --dry-run,\n"+
			"prints the report this machine would send (from /proc and the config),\n"+
			"without the agent and without sending it or using up a report id.", stderr)
	dry := c.fs.Bool("dry-run", false, "print the report instead of sending it")
	if err := c.parse(args, 0); err != nil {
		return err
	}
	if !*dry {
		var out any
		if err := c.client().Do(context.Background(), localapi.ActionDefenderReport, nil, &out); err != nil {
			return err
		}
		if *c.json {
			return printJSON(stdout, out)
		}
		fmt.Fprintln(stdout, "defender report sent")
		return nil
	}
	cfg, err := loadConfig(*c.cfgPath, nil)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
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
		fmt.Fprintf(stderr, "CBOR report, %d bytes on the wire; shown decoded:\n", len(b))
		return printJSON(stdout, r)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return printJSON(stdout, v)
}
