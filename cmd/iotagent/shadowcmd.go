package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/iotagent/iotagent/agent/localapi"
)

func shadowCmd(args []string, stdout, stderr io.Writer) error {
	const synopsis = "usage: iotagent shadow get|resync [flags]"
	if len(args) == 0 {
		return usagef(synopsis)
	}
	switch args[0] {
	case "get":
		c := newFlags("shadow get", "shadow get [flags]",
			"Shows the device shadow: what the agent reports, and desired and delta from a\nlive get when the agent is connected.", stderr)
		if err := c.parse(args[1:], 0); err != nil {
			return err
		}
		var sh localapi.Shadow
		if err := c.client().Get(context.Background(), localapi.SectionShadow, &sh); err != nil {
			return err
		}
		if *c.json {
			return printJSON(stdout, sh)
		}
		return renderShadow(stdout, sh)
	case "resync":
		c := newFlags("shadow resync", "shadow resync [flags]",
			"Asks the agent to get the shadow again, apply desired and report.", stderr)
		if err := c.parse(args[1:], 0); err != nil {
			return err
		}
		var d localapi.Done
		if err := c.client().Do(context.Background(), localapi.ActionResyncShadow, nil, &d); err != nil {
			return err
		}
		if *c.json {
			return printJSON(stdout, d)
		}
		fmt.Fprintln(stdout, d.Message)
		return nil
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, synopsis)
		return nil
	}
	return usagef("%s (unknown %q)", synopsis, args[0])
}

func renderShadow(w io.Writer, sh localapi.Shadow) error {
	var b strings.Builder
	state := "in sync"
	switch {
	case len(sh.Pending) > 0:
		state = "PENDING DELTA: " + strings.Join(sh.Pending, ", ")
	case !sh.InSync && !sh.FetchedLive:
		state = "cloud document unknown: " + sh.CloudError
	case !sh.InSync:
		state = "not in sync"
	}
	fmt.Fprintf(&b, "version %d, %s\n", sh.Version, state)
	for _, p := range sh.Problems {
		fmt.Fprintf(&b, "not applied: %s\n", p)
	}
	for _, part := range []struct {
		name string
		v    map[string]any
	}{{"desired", sh.Desired}, {"reported", sh.Reported}, {"delta", sh.Delta}} {
		if part.v == nil {
			continue
		}
		fmt.Fprintf(&b, "%s: ", part.name)
		var sb strings.Builder
		if err := printJSON(&sb, part.v); err != nil {
			return err
		}
		b.WriteString(sb.String())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sectionCmd is a command that prints one section as JSON text (jobs
// list, ota status): these have no fixed shape until their services exist.
func sectionCmd(name, synopsis, text, section string) func(args []string, stdout, stderr io.Writer) error {
	return func(args []string, stdout, stderr io.Writer) error {
		c := newFlags(name, synopsis, text, stderr)
		if err := c.parse(args, 0); err != nil {
			return err
		}
		var v any
		if err := c.client().Get(context.Background(), section, &v); err != nil {
			return fmt.Errorf("%w\n(%s)", err, notProvidedWhy(section))
		}
		return printJSON(stdout, v)
	}
}
