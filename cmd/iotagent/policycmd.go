package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/iotagent/iotagent/agent"
)

// configReference is where the .deb installs configs/README.md.
const configReference = "/usr/share/doc/iotagent/config-reference.md"

const policyText = `Prints the least-privilege AWS IoT policy document that the agent with this
config needs: connect as its thing, its shadow, the Jobs topics (when
jobs.enabled), Device Defender's (when defender.enabled), the telemetry,
alarm and warning topics, and, when rotation has a template (rotation.template
or provisioning.template), CreateCertificateFromCsr and RegisterThing through
it. Give it to "aws iot create-policy --policy-document file://policy.json".

The thing is the policy variable ${iot:Connection.Thing.ThingName}, so that
one policy serves every device (each connects with its thing name as client
id, with a certificate attached to that thing); --literal writes thing_name
instead. A policy that lacks a topic the agent uses makes AWS IoT Core close
the connection: change the config, print the policy again.

The output is JSON with or without --json.`

func policySetup(fs *flag.FlagSet) runFunc {
	literal := fs.Bool("literal", false, "name the thing (thing_name) instead of the policy variable")
	return func(x *inv) error {
		cfg, ok, err := x.rawConfig()
		if err != nil {
			return err
		}
		if !ok {
			return withHint(&configError{fmt.Errorf("config %s: no such file", x.configFile())}, "name the agent's config with --config FILE")
		}
		doc, err := agent.Policy(cfg, agent.PolicyOptions{Literal: *literal})
		if errors.Is(err, agent.ErrPolicyTooLong) {
			return withHint(err, "shorten the topics in the config (topics.*) or the rotation template's name")
		}
		if err != nil {
			return usagef("%v", err)
		}
		return printJSON(x.stdout, doc)
	}
}
