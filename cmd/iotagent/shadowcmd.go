package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/iotagent/iotagent/agent/localapi"
)

func shadowGet(x *inv) error {
	var sh localapi.Shadow
	if err := x.get(localapi.SectionShadow, &sh); err != nil {
		return err
	}
	if x.json {
		return printJSON(x.stdout, sh)
	}
	return renderShadow(x.stdout, sh)
}

func shadowResync(x *inv) error {
	var d localapi.Done
	if err := x.do(localapi.ActionResyncShadow, nil, &d); err != nil {
		return err
	}
	if x.json {
		return printJSON(x.stdout, d)
	}
	fmt.Fprintln(x.stdout, d.Message)
	return nil
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
