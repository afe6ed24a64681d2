package main

import (
	"flag"

	"github.com/iotagent/iotagent/agent/localapi"
)

// commands is the command table, in the order "iotagent help" lists them.
// It is filled in init: the help and completion commands read it.
var commands []*command

func init() { commands = table() }

// body is the setup of a command without flags of its own.
func body(f runFunc) func(*flag.FlagSet) runFunc {
	return func(*flag.FlagSet) runFunc { return f }
}

func table() []*command {
	return []*command{
		{name: "run", short: "run the agent (what the systemd unit starts)", long: runText,
			shared: withConfig | withJSON, setup: runSetup},
		{name: "config", short: "the config file", long: "Checks the configuration.", sub: []*command{
			{name: "config validate", args: "[FILE]", short: "check a config file and list every problem", long: validateText,
				shared: readsState, maxArgs: 1, setup: body(validateSetup)},
		}},
		{name: "status", short: "one screen about the agent (from the state dir when it is not running)", long: statusText,
			shared: asksAgent, setup: body(status)},
		{name: "sensors", short: "the sensors", long: "Reads the sensors, through the running agent or directly.", sub: []*command{
			{name: "sensors read", short: "read the sensors (directly when the agent is not running)", long: sensorsReadText,
				shared: asksAgent, setup: sensorsSetup(false)},
			{name: "sensors watch", short: "read the sensors every --interval", long: sensorsWatchText,
				shared: asksAgent, setup: sensorsSetup(true)},
		}},
		{name: "shadow", short: "the device shadow", long: "The device shadow, as the running agent sees it.", sub: []*command{
			{name: "shadow get", short: "show the shadow: reported, desired, delta", long: "Shows the device shadow: what the agent reports, and desired and delta from a\nlive get when the agent is connected.",
				shared: asksAgent, setup: body(shadowGet)},
			{name: "shadow resync", short: "ask the agent to get the shadow again, apply and report", long: "Asks the agent to get the shadow again, apply desired and report.",
				shared: asksAgent, setup: body(shadowResync)},
		}},
		{name: "jobs", short: "AWS IoT Jobs", long: "The agent's AWS IoT Jobs.", sub: []*command{
			{name: "jobs list", short: "the operations, the running, last and in-flight job", long: jobsListText,
				shared: asksAgent, setup: body(jobsList)},
		}},
		{name: "ota", short: "over-the-air updates of the agent", long: "Over-the-air updates: on the device (status, commit, rollback, init,\nprestart) and on the release machine (keygen, sign, release).", sub: []*command{
			{name: "ota status", short: "OTA slots and versions (from the state dir when the agent is not running)", long: otaStatusText,
				shared: asksAgent, setup: body(otaStatus)},
			{name: "ota commit", short: "commit the version on trial now", long: otaCommitText,
				shared: asksAgent, setup: body(otaCommit)},
			{name: "ota rollback", short: "go back to the previous version (the agent restarts)", long: otaRollbackText,
				shared: asksAgent, setup: otaRollbackSetup},
			{name: "ota keygen", short: "make a minisign key pair for releases", long: otaKeygenText,
				shared: withJSON, setup: otaKeygenSetup},
			{name: "ota sign", args: "FILE", short: "sign a release binary (FILE.minisig)", long: otaSignText,
				shared: withJSON, minArgs: 1, maxArgs: 1, setup: otaSignSetup},
			{name: "ota release", args: "FILE", short: "print the ota job document for a signed binary", long: otaReleaseText,
				shared: withJSON, minArgs: 1, maxArgs: 1, setup: otaReleaseSetup},
			{name: "ota init", short: "make or repair the OTA slots (systemd, before the agent)", long: otaInitText,
				shared: readsState, setup: otaInitSetup},
			{name: "ota prestart", short: "count a trial start or roll back (systemd, before the agent)", long: otaPrestartText,
				shared: readsState, setup: body(otaPrestart)},
		}},
		{name: "logs", short: "the newest log lines the agent keeps in memory", long: "Prints the newest log lines the running agent keeps in memory (no journal needed).",
			shared: asksAgent, setup: logsSetup},
		{name: "log-level", args: "LEVEL", short: "set the agent's log level until it restarts", long: "Sets the running agent's log level (debug, info, warn, error) until it restarts.",
			shared: asksAgent, minArgs: 1, maxArgs: 1, setup: body(logLevel)},
		{name: "diag", short: "check config, key, certificate, clock, network, TLS, MQTT, hardware", long: diagText,
			shared: asksAgent, setup: diagSetup},
		{name: "outbox", short: "the queue of unsent messages and its quarantine", long: outboxText, sub: []*command{
			{name: "outbox list", short: "the queue, oldest first (or the quarantine)", long: outboxText,
				shared: asksAgent, setup: outboxSetup(localapi.ActionOutboxList)},
			{name: "outbox retry", args: "[ID...]", short: "quarantined messages back to the front of the queue (all without IDs)", long: outboxText + "\n\nFix the IoT policy first.",
				shared: asksAgent, maxArgs: -1, setup: outboxSetup(localapi.ActionOutboxRetry)},
			{name: "outbox purge", args: "ID...|--all", short: "delete messages from the queue (or the quarantine)", long: outboxText,
				shared: asksAgent, maxArgs: -1, setup: outboxSetup(localapi.ActionOutboxPurge)},
		}},
		{name: "policy", short: "print the least-privilege AWS IoT policy the configured agent needs", long: policyText,
			shared: readsState, setup: policySetup},
		{name: "provision", short: "fleet provisioning once, for the manufacturing line (JSON result)", long: provisionText,
			shared: readsState, setup: provisionSetup},
		{name: "firstboot", short: "adopt a config dropped on the boot partition (root, before the agent)", long: firstbootText,
			shared: readsState, setup: firstbootSetup},
		{name: "cert", short: "the device certificate", long: "The device certificate.", sub: []*command{
			{name: "cert rotate", short: "new key and certificate now (also automatic near expiry)", long: certRotateText,
				shared: asksAgent, setup: certRotateSetup},
		}},
		{name: "defender", short: "AWS IoT Device Defender", long: "AWS IoT Device Defender reports.", sub: []*command{
			{name: "defender report", short: "send a Device Defender report now, or print it (--dry-run)", long: defenderReportText,
				shared: asksAgent, setup: defenderReportSetup},
		}},
		{name: "completion", args: "bash|zsh|fish", short: "print a shell completion script", long: completionText,
			shared: withJSON, minArgs: 1, maxArgs: 1, setup: body(completion)},
		{name: "version", short: "print version, commit and platform", long: "Prints the version, the commit and the platform.",
			shared: withJSON, setup: body(versionCmd)},
	}
}
