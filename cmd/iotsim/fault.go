package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/cloud/broker"
)

const faultUsage = `usage: iotsim fault add|list|clear [flags]

  iotsim fault add --kind KIND [flags]   inject a fault into the running iotsim; prints it (JSON)
  iotsim fault list                      print the faults and the latest injections (JSON)
  iotsim fault clear [ID]                remove one fault, or all; prints {"cleared": N}

Kinds: ` + "drop, delay (--packet connack|puback|suback|unsuback|pingresp|publish), refuse-connect [--code C], throttle-connect, close-after --packets N, close-on-publish --topic F, duplicate, throttle-jobs, throttle-shadow, expire-session, disconnect [--after D]." + `
Faults live in the running simulator ("iotsim serve"; "iotsim serve --faults FILE"
adds some at start) and go with it. See README.md, "Fault injection".`

func faultCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, faultUsage)
		return errors.New("no fault command given")
	}
	switch args[0] {
	case "add":
		return faultAdd(args[1:], stdout, stderr)
	case "list":
		return faultList(args[1:], stdout, stderr)
	case "clear":
		return faultClear(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, faultUsage)
		return nil
	}
	fmt.Fprintln(stderr, faultUsage)
	return fmt.Errorf("unknown fault command %q", args[0])
}

// faultClient returns a client of the iotsim serving dataDir; faults only
// exist in a running simulator.
func faultClient(dataDir string) (*api.Client, error) {
	db, ok, err := local(dataDir)
	if err != nil {
		return nil, err
	}
	if ok {
		db.Close()
		return nil, fmt.Errorf("no iotsim is serving %s: faults live in a running simulator (start `iotsim serve --data-dir %s`)", dataDir, dataDir)
	}
	c, _, err := remote(dataDir)
	return c, err
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// durationFlag is a flag.Value for broker.Duration.
type durationFlag struct{ d *broker.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return "0s"
	}
	return time.Duration(*f.d).String()
}

func (f durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*f.d = broker.Duration(v)
	return nil
}

func faultAdd(args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("fault add", "iotsim fault add --kind KIND [flags]", stderr)
	var f broker.Fault
	fs.StringVar(&f.ID, "id", "", "the fault's id (default: f1, f2, ...)")
	fs.StringVar(&f.Kind, "kind", "", "what to inject: "+strings.Join(broker.FaultKinds, ", ")+" (required)")
	fs.StringVar(&f.Packet, "packet", "", "for drop and delay: "+strings.Join(broker.FaultPackets, ", "))
	fs.StringVar(&f.Client, "client", "", "client id pattern, '*' matching any run of characters (default: every client)")
	fs.StringVar(&f.Topic, "topic", "", "MQTT topic filter the PUBLISH (or SUBSCRIBE filter) must match (default: all)")
	fs.Float64Var(&f.Probability, "probability", 0, "chance of injecting at each opportunity, 0 < p <= 1 (default 1)")
	fs.Int64Var(&f.Count, "count", 0, "inject at most this many times (default: no limit)")
	fs.Var(durationFlag{&f.Duration}, "for", "remove the fault after this long, e.g. 30s (default: until cleared)")
	fs.Var(durationFlag{&f.Delay}, "delay", "for kind delay: how long to hold the packet back")
	fs.IntVar(&f.Code, "code", 0, "for refuse-connect: CONNACK code (1..5 MQTT 3.1.1, 128..255 MQTT 5); 0 closes without a CONNACK, as AWS does")
	fs.Int64Var(&f.Packets, "packets", 0, "for close-after: close once the client has sent this many packets")
	fs.Var(durationFlag{&f.After}, "after", "for disconnect: close connections at this age (default: at once)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("fault add takes no arguments, got %q", pos)
	}
	if err := f.Validate(); err != nil {
		return err
	}
	c, err := faultClient(*dataDir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.AddFault(ctx, f)
	if err != nil {
		return fmt.Errorf("add fault: %w", err)
	}
	return printJSON(stdout, st)
}

func faultList(args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("fault list", "iotsim fault list", stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("fault list takes no arguments, got %q", pos)
	}
	c, err := faultClient(*dataDir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.ListFaults(ctx)
	if err != nil {
		return fmt.Errorf("list faults: %w", err)
	}
	return printJSON(stdout, r)
}

func faultClear(args []string, stdout, stderr io.Writer) error {
	fs, dataDir := newFlags("fault clear", "iotsim fault clear [ID]", stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		fs.Usage()
		return fmt.Errorf("fault clear takes at most one ID, got %q", pos)
	}
	c, err := faultClient(*dataDir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 1
	if len(pos) == 1 {
		err = c.RemoveFault(ctx, pos[0])
	} else {
		n, err = c.ClearFaults(ctx)
	}
	if err != nil {
		return fmt.Errorf("clear faults: %w", err)
	}
	return printJSON(stdout, map[string]int{"cleared": n})
}

// readFaults reads `iotsim serve --faults FILE`.
func readFaults(file string) ([]broker.Fault, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--faults: %w", err)
	}
	fs, err := broker.ParseFaults(data)
	if err != nil {
		return nil, fmt.Errorf("--faults %s: %w", file, err)
	}
	return fs, nil
}
