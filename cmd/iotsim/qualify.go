package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/qualify"
)

// errQualifyFailed: the suite ran and a case failed (exit code 1; usage
// and setup errors exit 2).
var errQualifyFailed = errors.New("qualify: cases failed")

const qualifyUsage = `usage: iotsim qualify --thing NAME [flags]

Runs the device-qualification suite against the device connected to the
running simulator as thing NAME (see docs/qualify.md): each case drives the
device with iotsim's faults and checks what it does.

Cases, in order: connect, reconnect-backoff, resubscribe, publish-retry,
persistent-session, shadow, jobs, keepalive.

Prints a table (--json: a JSON report) on stdout. Exit status: 0 when every
case passed, 1 when a case failed, 2 on a usage or setup error (no running
iotsim, no such thing).`

func qualifyCmd(args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("qualify", "iotsim qualify --thing NAME [flags]", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, qualifyUsage)
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	var o qualify.Options
	fs.StringVar(&o.Thing, "thing", "", "the device's thing name (required)")
	fs.StringVar(&o.ClientID, "client-id", "", "its MQTT client id (default: the thing name)")
	var cases listFlag
	fs.Var(&cases, "case", "run only this case (repeatable; default: all)")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "time limit of each case (the keepalive case gets its window on top)")
	fs.StringVar(&o.ShadowKey, "shadow-key", "", "dotted path of a boolean the device accepts in desired and reports back, e.g. outputs.led (default: the first boolean of the desired state)")
	fs.StringVar(&o.JobDocument, "job-document", "", "the jobs case's job document, JSON or @file (default "+qualify.DefaultJobDocument+")")
	fs.StringVar(&o.PublishTopic, "publish-topic", "", "topic filter of the QoS 1 PUBLISH whose PUBACK the publish-retry case withholds, one the device publishes on by itself (default: any; the case changes the desired state to make the device report)")
	fs.DurationVar(&o.KeepAliveWindow, "keepalive-window", 0, "how long the keepalive case watches the connection (default and minimum: 1.5 x the device's keep-alive)")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return fmt.Errorf("qualify takes no arguments, got %q", pos)
	}
	if o.Thing == "" {
		fs.Usage()
		return errors.New("qualify needs --thing NAME")
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout %s: want a positive duration", o.Timeout)
	}
	if o.KeepAliveWindow < 0 {
		return fmt.Errorf("--keepalive-window %s: negative", o.KeepAliveWindow)
	}
	if strings.HasPrefix(o.JobDocument, "@") {
		b, err := os.ReadFile(o.JobDocument[1:])
		if err != nil {
			return fmt.Errorf("--job-document: %w", err)
		}
		o.JobDocument = string(b)
	}
	if o.PublishTopic != "" {
		if err := broker.CheckFilter(o.PublishTopic); err != nil {
			return fmt.Errorf("--publish-topic %q: %w", o.PublishTopic, err)
		}
	}
	o.Cases = cases
	if !*quiet {
		o.Progress = stderr
	}
	c, err := faultClient(*dataDir)
	if err != nil {
		return err
	}
	o.Client = c
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := qualify.Run(ctx, o)
	if err != nil {
		return err
	}
	if *jsonOut {
		err = printJSON(stdout, rep)
	} else {
		err = rep.Table(stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("%w: %d of %d", errQualifyFailed, rep.Failed, len(rep.Results))
	}
	return nil
}
