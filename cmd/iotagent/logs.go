package main

import (
	"flag"
	"fmt"
	"slices"

	"github.com/iotagent/iotagent/agent/localapi"
)

func logsSetup(fs *flag.FlagSet) runFunc {
	n := fs.Int("n", 100, "print at most this many lines (0: all kept)")
	return func(x *inv) error {
		var l localapi.Logs
		if err := x.get(localapi.SectionLogs, &l); err != nil {
			return err
		}
		if *n > 0 && len(l.Lines) > *n {
			l.Lines = l.Lines[len(l.Lines)-*n:]
		}
		if x.json {
			return printJSON(x.stdout, l)
		}
		for _, line := range l.Lines {
			fmt.Fprintln(x.stdout, line)
		}
		return nil
	}
}

var logLevelNames = []string{"debug", "info", "warn", "error"}

func logLevel(x *inv) error {
	if !slices.Contains(logLevelNames, x.args[0]) {
		return &usageError{cmd: x.cmd, msg: fmt.Sprintf("iotagent log-level: %q is not a level (want debug, info, warn or error)", x.args[0])}
	}
	var l localapi.LogLevel
	if err := x.do(localapi.ActionLogLevel, localapi.LogLevel{Level: x.args[0]}, &l); err != nil {
		return err
	}
	if x.json {
		return printJSON(x.stdout, l)
	}
	fmt.Fprintf(x.stdout, "log level %s until the agent restarts\n", l.Level)
	return nil
}
