package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/iotagent/iotagent/agent/config"
)

// ThingVariable is the AWS IoT policy variable that stands for the thing
// a connection is attached to: the agent's client id is its thing name,
// so one policy with it serves a whole fleet.
const ThingVariable = "${iot:Connection.Thing.ThingName}"

// PolicyDocument is an AWS IoT policy document.
type PolicyDocument struct {
	Version   string            `json:"Version"`
	Statement []PolicyStatement `json:"Statement"`
}

// PolicyStatement is one statement of a PolicyDocument.
type PolicyStatement struct {
	Effect   string   `json:"Effect"`
	Action   []string `json:"Action"`
	Resource []string `json:"Resource"`
}

// PolicyOptions change what Policy writes.
type PolicyOptions struct {
	// Literal names the thing (cfg.ThingName) instead of ThingVariable.
	Literal bool
}

// ErrPolicyNoThing is Policy's error for Literal without a thing name.
var ErrPolicyNoThing = errors.New("policy: a literal thing name needs thing_name in the config")

// Policy is the least-privilege AWS IoT policy the agent configured by cfg
// needs: connect as its thing; its classic shadow; the Jobs topics when
// jobs.enabled; Device Defender's when defender.enabled; the telemetry,
// alarm and warning topics; and, when rotation has a template (rotation.
// template or provisioning.template), CreateCertificateFromCsr and
// RegisterThing through that template. Every topic is listed exactly as
// the agent uses it (agent/shadow, JobsFilters, agent/defender,
// agent/rotate): a policy that lacks one makes AWS IoT Core close the
// connection. The claim certificate of fleet provisioning has its own
// policy, which this is not.
func Policy(cfg config.Config, o PolicyOptions) (PolicyDocument, error) {
	thing := ThingVariable
	if o.Literal {
		if cfg.ThingName == "" {
			return PolicyDocument{}, ErrPolicyNoThing
		}
		thing = cfg.ThingName
	}
	const arn = "arn:aws:iot:*:*:" // a policy grants only in its own account and region
	// An AWS IoT policy has at most 2048 characters besides whitespace:
	// the agent publishes on exactly the topics listed, and subscribes to
	// and receives its thing's shadow and jobs topics ("/*" each: the
	// filters of agent/shadow and JobsFilters) and the responses of each
	// API it calls.
	var pub, sub []string // topics published; filters subscribed (each also received)
	shadow := "$aws/things/" + thing + "/shadow/"
	pub = append(pub, shadow+"get", shadow+"update")
	sub = append(sub, shadow+"*")
	if cfg.Jobs.Enabled {
		// JobsFilters: notify-next, start-next/{accepted,rejected},
		// +/update/{accepted,rejected}.
		jobs := "$aws/things/" + thing + "/jobs/"
		pub = append(pub, jobs+"start-next", jobs+"*/update")
		sub = append(sub, jobs+"*")
	}
	if cfg.Defender.Enabled {
		m := "$aws/things/" + thing + "/defender/metrics/" + cfg.Defender.Format
		pub = append(pub, m)
		sub = append(sub, m+"/*")
	}
	for _, t := range []string{cfg.Topics.Telemetry, cfg.Topics.Alarms, cfg.Topics.Warnings} {
		pub = appendNew(pub, strings.ReplaceAll(policyEscape(t), "{thing}", thing))
	}
	if tmpl := cfg.RotationTemplate(); tmpl != "" {
		for _, base := range []string{"$aws/certificates/create-from-csr/json", "$aws/provisioning-templates/" + policyEscape(tmpl) + "/provision/json"} {
			pub = append(pub, base)
			sub = append(sub, base+"/*")
		}
	}
	d := PolicyDocument{Version: "2012-10-17"}
	add := func(action, kind string, names []string) {
		s := PolicyStatement{Effect: "Allow", Action: []string{action}}
		for _, n := range names {
			s.Resource = append(s.Resource, arn+kind+"/"+n)
		}
		d.Statement = append(d.Statement, s)
	}
	add("iot:Connect", "client", []string{thing})
	add("iot:Publish", "topic", pub)
	add("iot:Subscribe", "topicfilter", sub)
	add("iot:Receive", "topic", sub)
	if n := d.Size(); n > PolicyMaxChars {
		return d, fmt.Errorf("%w: %d characters", ErrPolicyTooLong, n)
	}
	return d, nil
}

// PolicyMaxChars is AWS IoT's limit on a policy document's characters,
// whitespace not counted.
const PolicyMaxChars = 2048

// ErrPolicyTooLong is Policy's error for a document over PolicyMaxChars
// (long topic names in the config): AWS IoT refuses it.
var ErrPolicyTooLong = errors.New("policy: the document is longer than AWS IoT allows (2048 characters besides whitespace)")

// Size is the document's length as AWS IoT counts it: compact JSON,
// whitespace not counted.
func (d PolicyDocument) Size() int {
	b, _ := json.Marshal(d)
	n := 0
	for _, r := range string(b) {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// policyEscape writes a name from the config so that an AWS IoT policy
// reads it literally: "*" and "?" are wildcards there, and "${" starts a
// variable.
func policyEscape(s string) string {
	return strings.NewReplacer("${", "${$}{", "*", "${*}", "?", "${?}").Replace(s)
}

func appendNew(list []string, s string) []string {
	for _, have := range list {
		if have == s {
			return list
		}
	}
	return append(list, s)
}
