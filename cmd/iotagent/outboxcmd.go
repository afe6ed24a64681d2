package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/agent/outbox"
)

const outboxText = `The outbox holds telemetry, warnings and alarms until the broker acknowledges
them; its quarantine holds the messages the broker kept refusing (it closed
the connection right after their PUBLISH, 3 times in a row: usually an IoT
policy that denies the topic, e.g. an old thing name), so that the rest of
the queue goes on.

Works through the running agent; when it is not running, directly on the
state dir's agent.db (--state-dir, default: state_dir from --config).`

// outboxSetup is the setup of `iotagent outbox list|retry|purge`: one body,
// the action named by the subcommand.
func outboxSetup(action string) func(fs *flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		var quarantine, all *bool
		limit := new(int)
		switch action {
		case localapi.ActionOutboxList:
			quarantine = fs.Bool("quarantine", false, "list the quarantine instead of the queue")
			fs.IntVar(limit, "limit", 100, "at most this many messages")
		case localapi.ActionOutboxPurge:
			quarantine = fs.Bool("quarantine", false, "purge from the quarantine instead of the queue")
			all = fs.Bool("all", false, "every message of the queue (or of the quarantine)")
		}
		return func(x *inv) error {
			req := localapi.OutboxRequest{Limit: *limit, Quarantine: action == localapi.ActionOutboxRetry}
			if quarantine != nil {
				req.Quarantine = *quarantine
			}
			if all != nil {
				req.All = *all
			}
			for _, a := range x.args {
				id, err := strconv.ParseUint(a, 10, 64)
				if err != nil || id == 0 {
					return &usageError{cmd: x.cmd, msg: fmt.Sprintf("iotagent %s: %q is not a message ID (a positive number; iotagent outbox list shows them)", x.cmd.name, a)}
				}
				req.IDs = append(req.IDs, id)
			}
			if action == localapi.ActionOutboxPurge {
				if len(req.IDs) == 0 && !req.All {
					return &usageError{cmd: x.cmd, msg: "iotagent outbox purge: name the messages (IDs from iotagent outbox list), or give --all"}
				}
				if len(req.IDs) > 0 && req.All {
					return &usageError{cmd: x.cmd, msg: "iotagent outbox purge: IDs or --all, not both"}
				}
			}
			out, err := outboxOnline(x, action, req)
			if errors.Is(err, localapi.ErrNotRunning) {
				dir, derr := x.stateDirPath()
				if derr != nil {
					return derr
				}
				out, err = outboxOffline(dir, action, req)
			}
			if err != nil {
				return err
			}
			if x.json {
				return printJSON(x.stdout, out)
			}
			_, err = io.WriteString(x.stdout, renderOutbox(out))
			return err
		}
	}
}

// outboxOnline runs the action through the running agent.
func outboxOnline(x *inv, action string, req localapi.OutboxRequest) (any, error) {
	var out any = &localapi.OutboxChange{}
	if action == localapi.ActionOutboxList {
		out = &localapi.OutboxList{}
	}
	if err := x.do(action, req, out); err != nil {
		var e *localapi.Error
		if errors.As(err, &e) && e.Code == "bad_request" {
			return nil, &exitError{code: exitFail, err: errors.New(e.Message)}
		}
		return nil, err
	}
	return out, nil
}

// outboxOffline runs the action on the state dir's agent.db.
func outboxOffline(stateDir, action string, req localapi.OutboxRequest) (any, error) {
	ob, db, err := agent.OpenOutbox(stateDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("the agent is not running, and %s has no agent.db (wrong --state-dir? nothing was ever queued there)", stateDir)
	case errors.Is(err, agent.ErrAgentRunning):
		return nil, &exitError{code: exitNoAgent, err: fmt.Errorf("%w but its local API does not answer", err)}
	case err != nil:
		return nil, err
	}
	defer db.Close()
	switch action {
	case localapi.ActionOutboxList:
		l, err := agent.OutboxList(ob, req)
		l.Offline = true
		return &l, err
	case localapi.ActionOutboxRetry:
		ch, err := agent.OutboxRetry(ob, req)
		if err != nil {
			return nil, notFoundFail(err)
		}
		ch.Offline = true
		if len(ch.IDs) > 0 {
			ch.Message += "; the agent sends them when it starts"
		}
		return &ch, nil
	default:
		ch, err := agent.OutboxPurge(ob, req)
		if err != nil {
			return nil, notFoundFail(err)
		}
		ch.Offline = true
		return &ch, nil
	}
}

func notFoundFail(err error) error {
	var e *localapi.Error
	if errors.Is(err, outbox.ErrNotFound) || errors.As(err, &e) {
		return &exitError{code: exitFail, err: err}
	}
	return err
}

// renderOutbox is the human-readable answer.
func renderOutbox(v any) string {
	var b strings.Builder
	switch out := v.(type) {
	case *localapi.OutboxChange:
		b.WriteString(out.Message)
		if len(out.IDs) > 0 {
			ids := make([]string, len(out.IDs))
			for i, id := range out.IDs {
				ids[i] = strconv.FormatUint(id, 10)
			}
			fmt.Fprintf(&b, " (IDs %s)", strings.Join(ids, ", "))
		}
		b.WriteString("\n")
		if out.Offline {
			b.WriteString("(the agent is not running: done in its state dir)\n")
		}
	case *localapi.OutboxList:
		st := out.Stats
		if out.Offline {
			b.WriteString("The agent is not running: read from its state dir.\n")
		}
		oldest := ""
		if !st.Oldest.IsZero() {
			oldest = fmt.Sprintf(", oldest queued %s (%s ago)", stamp(st.Oldest), ago(now(), st.Oldest))
		}
		fmt.Fprintf(&b, "Queue: %d messages, %d bytes%s\nQuarantine: %d messages (%d ever quarantined); %d dropped, %d purged\n",
			st.Depth, st.Bytes, oldest, st.Quarantined, st.QuarantinedTotal, st.Dropped, st.Purged)
		if st.Error != "" {
			fmt.Fprintf(&b, "Error: %s\n", st.Error)
		}
		what := "queue"
		if out.Quarantine {
			what = "quarantine"
		}
		if len(out.Messages) == 0 {
			fmt.Fprintf(&b, "\nThe %s is empty.\n", what)
			return b.String()
		}
		fmt.Fprintf(&b, "\n%-8s %-9s %-23s %7s  %s\n", "ID", "CLASS", "QUEUED", "BYTES", "TOPIC")
		for _, m := range out.Messages {
			fmt.Fprintf(&b, "%-8d %-9s %-23s %7d  %s\n", m.ID, m.Class, stamp(m.Enqueued), m.Bytes, m.Topic)
			if m.Reason != "" {
				fmt.Fprintf(&b, "%8s quarantined %s: %s\n", "", stamp(m.QuarantinedAt), m.Reason)
			}
			fmt.Fprintf(&b, "%8s %s\n", "", m.Payload)
		}
		if out.More > 0 {
			fmt.Fprintf(&b, "... and %d more (--limit)\n", out.More)
		}
		if out.Quarantine {
			b.WriteString("\nOnce the IoT policy allows the topic: iotagent outbox retry [ID...]; to drop them: iotagent outbox purge --quarantine ID...\n")
		}
	}
	return b.String()
}
