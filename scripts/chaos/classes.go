package main

import (
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
)

// class is one fault class: the faults iotsim injects while it lasts.
type class struct {
	name   string
	faults []broker.Fault
	// timed faults last as long as the class's active time (their
	// Duration is set to it), however long that is.
	timed bool
}

func ms(n int) broker.Duration { return broker.Duration(time.Duration(n) * time.Millisecond) }

// classes are the fault classes of iotsim's fault engine, as
// TestAgentUnderFaults (agent/faults_test.go) runs them in-process; "none"
// comes first, as the baseline. Each fault is aimed at the agent's client
// ID when the run adds it, so that the observer's connection is never
// disturbed.
var classes = []class{
	{name: "none"},
	{name: "drop-puback", faults: []broker.Fault{{Kind: broker.FaultDrop, Packet: "puback", Topic: "alarms/#", Count: 2}}},
	{name: "delay-puback", faults: []broker.Fault{{Kind: broker.FaultDelay, Packet: "puback", Delay: ms(2500), Count: 2}}},
	{name: "drop-suback", faults: []broker.Fault{{Kind: broker.FaultDrop, Packet: "suback", Count: 1}, {Kind: broker.FaultDisconnect, Count: 1}}},
	{name: "drop-connack", faults: []broker.Fault{{Kind: broker.FaultDrop, Packet: "connack", Count: 1}, {Kind: broker.FaultDisconnect, Count: 1}}},
	{name: "delay-connack", faults: []broker.Fault{{Kind: broker.FaultDelay, Packet: "connack", Delay: ms(1000), Count: 2}, {Kind: broker.FaultDisconnect, Count: 2}}},
	{name: "refuse-connect", faults: []broker.Fault{{Kind: broker.FaultRefuseConnect, Count: 2}, {Kind: broker.FaultRefuseConnect, Code: 3, Count: 1}, {Kind: broker.FaultDisconnect, Count: 1}}},
	{name: "throttle-connect", faults: []broker.Fault{{Kind: broker.FaultThrottleConnect, Count: 3}, {Kind: broker.FaultDisconnect, Count: 1}}},
	{name: "close-after", faults: []broker.Fault{{Kind: broker.FaultCloseAfter, Packets: 4, Count: 3}}},
	{name: "close-on-publish", faults: []broker.Fault{{Kind: broker.FaultCloseOnPublish, Topic: "alarms/#", Count: 2}}},
	{name: "duplicate", faults: []broker.Fault{{Kind: broker.FaultDuplicate}}},
	{name: "delay-deliveries", faults: []broker.Fault{{Kind: broker.FaultDelay, Packet: "publish", Delay: ms(300), Probability: 0.5}}},
	{name: "throttle-shadow", faults: []broker.Fault{{Kind: broker.FaultThrottleShadow, Topic: "$aws/things/+/shadow/update", Count: 2}}},
	{name: "throttle-jobs", faults: []broker.Fault{{Kind: broker.FaultThrottleJobs, Count: 1}}},
	{name: "throttle-jobs-update", faults: []broker.Fault{{Kind: broker.FaultThrottleJobs, Topic: "$aws/things/+/jobs/+/update", Count: 2}}},
	{name: "drop-puback-jobs", faults: []broker.Fault{{Kind: broker.FaultDrop, Packet: "puback", Topic: "$aws/things/+/jobs/+/update", Count: 1}}},
	{name: "drop-puback-shadow", faults: []broker.Fault{{Kind: broker.FaultDrop, Packet: "puback", Topic: "$aws/things/+/shadow/update", Count: 1}}},
	{name: "drop-delivery", faults: []broker.Fault{{Kind: broker.FaultDrop, Packet: "publish", Topic: "$aws/things/+/jobs/start-next/accepted", Count: 1}}},
	{name: "expire-session", faults: []broker.Fault{{Kind: broker.FaultExpireSession, Count: 1}, {Kind: broker.FaultDisconnect, Count: 1}}},
	{name: "lossy-acks", timed: true, faults: []broker.Fault{{Kind: broker.FaultDrop, Packet: "puback", Probability: 0.3}}},
	{name: "flapping", timed: true, faults: []broker.Fault{{Kind: broker.FaultDisconnect, After: ms(400)}, {Kind: broker.FaultExpireSession}}},
	{name: "slow-suback", faults: []broker.Fault{{Kind: broker.FaultDelay, Packet: "suback", Delay: ms(2500), Count: 2}, {Kind: broker.FaultDisconnect, Count: 1}}},
	{name: "duplicate-and-late", faults: []broker.Fault{{Kind: broker.FaultDuplicate, Probability: 0.5}, {Kind: broker.FaultDelay, Packet: "publish", Delay: ms(500), Probability: 0.3}}},
	{name: "disconnect", faults: []broker.Fault{{Kind: broker.FaultDisconnect, After: ms(300), Count: 3}}},
}

// aimed returns c's faults aimed at clientID, timed ones lasting active.
func (c class) aimed(clientID string, active time.Duration) []broker.Fault {
	out := make([]broker.Fault, len(c.faults))
	for i, f := range c.faults {
		f.Client = clientID
		if c.timed {
			f.Duration = broker.Duration(active)
		}
		out[i] = f
	}
	return out
}
