package main

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/iotagent/iotagent/agent/localapi"
)

func logsCmd(args []string, stdout, stderr io.Writer) error {
	c := newFlags("logs", "logs [flags]",
		"Prints the newest log lines the running agent keeps in memory (no journal needed).", stderr)
	n := c.fs.Int("n", 100, "print at most this many lines (0: all kept)")
	if err := c.parse(args, 0); err != nil {
		return err
	}
	var l localapi.Logs
	if err := c.client().Get(context.Background(), localapi.SectionLogs, &l); err != nil {
		return err
	}
	if *n > 0 && len(l.Lines) > *n {
		l.Lines = l.Lines[len(l.Lines)-*n:]
	}
	if *c.json {
		return printJSON(stdout, l)
	}
	for _, line := range l.Lines {
		fmt.Fprintln(stdout, line)
	}
	return nil
}

var logLevelNames = []string{"debug", "info", "warn", "error"}

func logLevelCmd(args []string, stdout, stderr io.Writer) error {
	c := newFlags("log-level", "log-level LEVEL [flags]",
		"Sets the running agent's log level (debug, info, warn, error) until it restarts.", stderr)
	if err := c.parse(args, 1); err != nil {
		return err
	}
	if c.fs.NArg() != 1 || !slices.Contains(logLevelNames, c.fs.Arg(0)) {
		return usagef("usage: iotagent log-level debug|info|warn|error")
	}
	var l localapi.LogLevel
	if err := c.client().Do(context.Background(), localapi.ActionLogLevel, localapi.LogLevel{Level: c.fs.Arg(0)}, &l); err != nil {
		return err
	}
	if *c.json {
		return printJSON(stdout, l)
	}
	fmt.Fprintf(stdout, "log level %s until the agent restarts\n", l.Level)
	return nil
}
