package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/localapi"
)

// offline handles a command whose agent did not answer. When the agent is
// not running (or does not answer) it reads the state dir instead: the
// text goes to stdout now (render), the part the command shows (pick) into
// the --json error object's "offline"; the exit code stays 3. Any other
// error is returned as it is.
func offline(x *inv, err error, render func(w io.Writer, st agent.OfflineState, why error)) error {
	return offlinePick(x, err, render, func(st agent.OfflineState) any { return st })
}

func offlinePick(x *inv, err error, render func(w io.Writer, st agent.OfflineState, why error), pick func(agent.OfflineState) any) error {
	if !errors.Is(err, localapi.ErrNotRunning) && !errors.Is(err, localapi.ErrTimeout) {
		return err
	}
	cfg, _, cerr := x.rawConfig()
	if cerr != nil {
		return err
	}
	st := agent.ReadOffline(cfg, now())
	if !x.json {
		render(x.stdout, st, err)
	}
	return &offlineError{err: fmt.Errorf("%w; shown: what the state dir %s says", err, st.StateDir), report: pick(st)}
}

// lineWriter is the status screen's line layout on b.
func lineWriter(b *strings.Builder) func(label, format string, args ...any) {
	return func(label, format string, args ...any) {
		fmt.Fprintf(b, "%-11s %s\n", label, fmt.Sprintf(format, args...))
	}
}

// renderDown is the first line of an offline screen.
func renderDown(line func(label, format string, args ...any), st agent.OfflineState, why error) {
	line("Agent", "NOT RUNNING: %v", why)
	line("", "from the state dir %s:", st.StateDir)
}

// renderOffline is the status screen of an agent that is not running.
func renderOffline(w io.Writer, st agent.OfflineState, why error) {
	var b strings.Builder
	line := lineWriter(&b)
	renderDown(line, st, why)
	renderIdentity(st.Identity, line)
	renderJobs(st.Jobs, line)
	renderOTAOffline(st.OTA, line)
	if p := st.FirstBoot; p != nil {
		line("First boot", "NOT ADOPTED at %s: %s (files left in %s)", stamp(p.Time), p.Error, p.BootDir)
	}
	io.WriteString(w, b.String())
}

// renderOTAOffline is the OTA line from the state dir: which version the
// agent starts next.
func renderOTAOffline(o localapi.OTA, line func(label, format string, args ...any)) {
	off := ""
	if !o.Enabled {
		off = " (ota.enabled is false)"
	}
	switch {
	case o.Error != "":
		line("OTA", "state unreadable: %s%s", o.Error, off)
	case o.State == "":
		line("OTA", "no OTA slots (iotagent ota init makes them)%s", off)
	case o.InTrial:
		line("OTA", "version %s ON TRIAL in slot %s (start %d of %d); slot %s (%s) is the fallback%s",
			orUnknown(o.ReleaseVersion), o.Slot, o.Starts, o.MaxStarts, o.Active, orUnknown(o.ActiveVersion), off)
	default:
		line("OTA", "slot %s (%s) committed; last update %s%s", o.Active, orUnknown(o.ActiveVersion), o.State, off)
	}
	if o.TrialFailure != "" {
		line("", "the version on trial failed: %s", o.TrialFailure)
	}
	if o.Reason != "" {
		line("", "reason: %s", o.Reason)
	}
	if len(o.Failed) > 0 {
		line("", "never reinstalled automatically: %s", strings.Join(o.Failed, ", "))
	}
}

const jobsListText = `The agent's jobs: the operations it runs, the job running now, the last
one finished (including one REJECTED without running, e.g. for an unknown
operation) and the one in flight (STATE/jobs/inflight.json, resumed at the
next start). When the agent is not running, what the state dir says
(exit 3).`

func jobsList(x *inv) error {
	return showSection(x, localapi.SectionJobs, "this agent's build has no jobs service", renderJobs,
		func(st agent.OfflineState, line lineFunc) { renderJobs(st.Jobs, line) },
		func(st agent.OfflineState) any { return st.Jobs })
}

const otaStatusText = `The OTA slots and versions: the version running, the committed slot, a
version on trial and its starts, the last update and the versions never
reinstalled. When the agent is not running (a crash-looping trial), what
the state dir says: which version starts next (exit 3).`

func otaStatus(x *inv) error {
	return showSection(x, localapi.SectionOTA, "this agent's build has no OTA updater", renderOTA,
		func(st agent.OfflineState, line lineFunc) { renderOTAOffline(st.OTA, line) },
		func(st agent.OfflineState) any { return st.OTA })
}

// lineFunc writes one labelled line of a text view (lineWriter).
type lineFunc = func(label, format string, args ...any)

// showSection prints the running agent's section name as text (render) or
// JSON; when the agent is down, what the state dir says instead (offline,
// and pick for --json), and exit 3.
func showSection[T any](x *inv, name, notProvided string, render func(T, lineFunc),
	offline func(agent.OfflineState, lineFunc), pick func(agent.OfflineState) any) error {
	var v T
	if err := x.get(name, &v); err != nil {
		if errors.Is(err, localapi.ErrNotProvided) {
			return fmt.Errorf("%w (%s)", err, notProvided)
		}
		return offlinePick(x, err, func(w io.Writer, st agent.OfflineState, why error) {
			var b strings.Builder
			line := lineWriter(&b)
			renderDown(line, st, why)
			offline(st, line)
			io.WriteString(w, b.String())
		}, pick)
	}
	if x.json {
		return printJSON(x.stdout, v)
	}
	var b strings.Builder
	render(v, lineWriter(&b))
	_, err := io.WriteString(x.stdout, b.String())
	return err
}
