package main

import (
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/localapi"
)

// What the running agent actually did: diag's checks of its subscriptions,
// its recent publishes, its outbox and its thing name. Connecting is not
// enough: an IoT policy that denies one topic lets the agent connect and
// then closes the connection after the SUBSCRIBE or PUBLISH, over and over.

// activityChecks are the names of these checks, in order.
var activityChecks = []string{"subscriptions", "publishes", "outbox", "thing name"}

// staleOutbox is how old the oldest queued message may be while connected
// before the outbox counts as not draining.
const staleOutbox = 2 * time.Minute

// agentView is what diag read from the running agent.
type agentView struct {
	conn   localapi.Connection
	agent  *localapi.Agent
	outbox *localapi.Outbox
}

// readAgentView reads the sections the activity checks need.
func readAgentView(ctx context.Context, c *localapi.Client, conn localapi.Connection) *agentView {
	v := &agentView{conn: conn}
	var ag localapi.Agent
	if c.Get(ctx, localapi.SectionAgent, &ag) == nil {
		v.agent = &ag
	}
	var ob localapi.Outbox
	if c.Get(ctx, localapi.SectionOutbox, &ob) == nil {
		v.outbox = &ob
	}
	return v
}

func (d *diagRun) checkActivity() {
	d.checkSubscriptions()
	d.checkPublishes()
	d.checkOutbox()
	d.checkThingName()
}

// policyFix is the fix for a denied topic.
func policyFix(kind, topic string, next time.Time, now time.Time) string {
	action, res := "iot:Publish on topic/"+topic, ""
	if kind == "subscribe" {
		action, res = "iot:Subscribe on topicfilter/"+topic, " (and iot:Receive on the topics it matches)"
	}
	when := ""
	if !next.IsZero() {
		when = fmt.Sprintf(" (else the next attempt is in %s)", ago(now, now.Add(-next.Sub(now))))
	}
	return fmt.Sprintf("allow %s%s in the IoT policy attached to the device certificate; then iotagent outbox retry reconnects at once%s", action, res, when)
}

func (d *diagRun) diagnosis(kind string) *localapi.ConnDiagnosis {
	if dg := d.view.conn.Diagnosis; dg != nil && dg.Kind == kind {
		return dg
	}
	return nil
}

func (d *diagRun) diagnosisDetail(dg *localapi.ConnDiagnosis) string {
	return fmt.Sprintf("%s (%d connection(s) in a row, the last %s ago)", dg.Text, dg.InARow, ago(d.env.now(), dg.At))
}

func (d *diagRun) checkSubscriptions() {
	if d.view == nil {
		d.skip("subscriptions", "the agent is not running (the round trip check below subscribes itself)")
		return
	}
	c := d.view.conn
	if dg := d.diagnosis("subscribe"); dg != nil {
		d.add("subscriptions", fail, d.diagnosisDetail(dg), policyFix("subscribe", dg.Topic, c.NextAttempt, d.env.now()))
		return
	}
	switch {
	case !c.Connected:
		d.add("subscriptions", warn, "the agent is not connected: none acknowledged now", "see the agent line")
	case c.Subscribed < c.Subscriptions:
		d.add("subscriptions", fail, fmt.Sprintf("only %d of %d subscriptions acknowledged: the agent is deaf to the rest", c.Subscribed, c.Subscriptions),
			"check the IoT policy's iot:Subscribe resources (iotagent logs names the refused filters)")
	default:
		d.add("subscriptions", pass, fmt.Sprintf("all %d subscriptions acknowledged by the broker", c.Subscriptions), "")
	}
}

func (d *diagRun) checkPublishes() {
	if d.view == nil {
		d.skip("publishes", "the agent is not running")
		return
	}
	c := d.view.conn
	if dg := d.diagnosis("publish"); dg != nil {
		fix := policyFix("publish", dg.Topic, c.NextAttempt, d.env.now())
		if dg.OutboxID != 0 {
			fix += fmt.Sprintf("; a message for a topic that should not be used (an old thing name) can go: iotagent outbox purge %d", dg.OutboxID)
		}
		d.add("publishes", fail, d.diagnosisDetail(dg), fix)
		return
	}
	detail := "none acknowledged yet"
	if !c.LastPublishAck.IsZero() {
		detail = fmt.Sprintf("%d acknowledged, the last %s ago", c.Published, ago(d.env.now(), c.LastPublishAck))
	}
	if c.PublishFailures > 0 {
		detail += fmt.Sprintf("; %d ended without an acknowledgement (connection lost; resent)", c.PublishFailures)
	}
	d.add("publishes", pass, detail, "")
}

func (d *diagRun) checkOutbox() {
	var ob localapi.Outbox
	offline := ""
	switch {
	case d.view != nil && d.view.outbox != nil:
		ob = *d.view.outbox
	case d.view != nil:
		d.add("outbox", warn, "the running agent did not answer for its outbox", "iotagent outbox list")
		return
	default:
		o, db, err := agent.OpenOutbox(d.cfg.StateDir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			d.add("outbox", pass, "no agent.db in "+d.cfg.StateDir+" yet: nothing queued", "")
			return
		case errors.Is(err, agent.ErrAgentRunning):
			d.skip("outbox", err.Error())
			return
		case errors.Is(err, os.ErrPermission):
			d.add("outbox", warn, err.Error(), "run diag as root (the state dir is the agent's)")
			return
		case err != nil:
			d.add("outbox", fail, err.Error(), "see iotagent status after the agent starts: it moves an unreadable agent.db aside")
			return
		}
		agent.OutboxStats(o, &ob)
		db.Close()
		offline = " (read from the state dir: the agent is not running)"
	}
	now := d.env.now()
	switch {
	case ob.Quarantined > 0:
		d.add("outbox", fail, fmt.Sprintf("%d message(s) in the quarantine: the broker closed the connection after each of them, again and again%s", ob.Quarantined, offline),
			"iotagent outbox list --quarantine shows topics and reasons; fix the IoT policy then iotagent outbox retry, or drop them: iotagent outbox purge --quarantine ID...")
	case ob.Depth > 0 && d.view != nil && d.view.conn.Connected && !ob.Oldest.IsZero() && now.Sub(ob.Oldest) > staleOutbox:
		d.add("outbox", fail, fmt.Sprintf("not draining: %d queued, the oldest since %s (%s ago), although connected", ob.Depth, stamp(ob.Oldest), ago(now, ob.Oldest)),
			"iotagent outbox list; iotagent logs shows why the broker does not acknowledge them")
	case ob.Depth > 0 && (d.view == nil || !d.view.conn.Connected):
		d.add("outbox", warn, fmt.Sprintf("%d message(s) queued while offline%s", ob.Depth, offline), "they go out once the agent is connected")
	case ob.Depth > 0:
		d.add("outbox", pass, fmt.Sprintf("draining: %d queued", ob.Depth), "")
	default:
		d.add("outbox", pass, "empty; nothing in the quarantine"+offline, "")
	}
}

func (d *diagRun) checkThingName() {
	if d.view == nil || d.view.agent == nil {
		d.skip("thing name", "the agent is not running")
		return
	}
	if got, want := d.view.agent.Thing, d.cfg.ThingName; got != want {
		d.add("thing name", fail, fmt.Sprintf("the running agent is thing %s, but %s names %s", got, d.env.cfgPath, want),
			"the agent runs with another config or --thing-name: run diag with the agent's --config")
		return
	}
	d.add("thing name", pass, "the running agent and "+d.env.cfgPath+" agree: "+d.cfg.ThingName, "")
}

// jobsSubscriptions subscribes, one SUBSCRIBE each, to the Jobs filters
// the agent needs when jobs.enabled; AWS IoT closes the connection after a
// SUBSCRIBE its policy denies. It returns the FAIL detail and fix, or "".
func (d *diagRun) jobsSubscriptions(pc mqtt.Client, thing string) (detail, fix string) {
	if !d.cfg.Jobs.Enabled {
		return "", ""
	}
	for _, f := range agent.JobsFilters {
		filter := "$aws/things/" + thing + "/jobs/" + f
		tok := pc.Subscribe(filter, 1, func(mqtt.Client, mqtt.Message) {})
		ok := tok.WaitTimeout(d.env.timeout)
		refused := false
		if st, isSub := tok.(*mqtt.SubscribeToken); isSub && ok && tok.Error() == nil {
			refused = st.Result()[filter] == 0x80
		}
		if !ok || tok.Error() != nil || refused || !pc.IsConnectionOpen() {
			return fmt.Sprintf("the shadow answers, but the broker refused (or closed the connection right after) subscribe to %s: the IoT policy probably denies it, and jobs.enabled is true", filter),
				"allow iot:Subscribe on topicfilter/$aws/things/" + thing + "/jobs/* (and iot:Publish, iot:Receive on topic/$aws/things/" + thing + "/jobs/*) in the IoT policy attached to the device certificate, or set jobs.enabled to false"
		}
	}
	return "", ""
}

func (d *diagRun) jobsNote() string {
	if !d.cfg.Jobs.Enabled {
		return ""
	}
	return "; the Jobs subscriptions are allowed"
}
