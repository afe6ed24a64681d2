package broker

import "time"

// FaultClass is one kind of trouble a device meets on AWS IoT Core, as the
// faults iotsim injects while it lasts.
type FaultClass struct {
	Name   string
	Faults []Fault
	// Timed faults last as long as the caller's active time (Aimed sets
	// their Duration); the others end after their Count.
	Timed bool
}

func ms(n int) Duration { return Duration(time.Duration(n) * time.Millisecond) }

// FaultClasses are the classes the agent is proven under: the agent's
// TestAgentUnderFaults runs each against an in-process iotsim, and
// `make chaos` (scripts/chaos) runs them against `iotsim serve` and the
// agent binary. "none", the baseline, comes first.
var FaultClasses = []FaultClass{
	{Name: "none"},
	{Name: "drop-puback", Faults: []Fault{{Kind: FaultDrop, Packet: "puback", Topic: "alarms/#", Count: 2}}},
	{Name: "delay-puback", Faults: []Fault{{Kind: FaultDelay, Packet: "puback", Delay: ms(2500), Count: 2}}},
	{Name: "drop-suback", Faults: []Fault{{Kind: FaultDrop, Packet: "suback", Count: 1}, {Kind: FaultDisconnect, Count: 1}}},
	{Name: "drop-connack", Faults: []Fault{{Kind: FaultDrop, Packet: "connack", Count: 1}, {Kind: FaultDisconnect, Count: 1}}},
	{Name: "delay-connack", Faults: []Fault{{Kind: FaultDelay, Packet: "connack", Delay: ms(1000), Count: 2}, {Kind: FaultDisconnect, Count: 2}}},
	{Name: "refuse-connect", Faults: []Fault{{Kind: FaultRefuseConnect, Count: 2}, {Kind: FaultRefuseConnect, Code: 3, Count: 1}, {Kind: FaultDisconnect, Count: 1}}},
	{Name: "throttle-connect", Faults: []Fault{{Kind: FaultThrottleConnect, Count: 3}, {Kind: FaultDisconnect, Count: 1}}},
	{Name: "close-after", Faults: []Fault{{Kind: FaultCloseAfter, Packets: 4, Count: 3}}},
	{Name: "close-on-publish", Faults: []Fault{{Kind: FaultCloseOnPublish, Topic: "alarms/#", Count: 2}}},
	{Name: "duplicate", Faults: []Fault{{Kind: FaultDuplicate}}},
	{Name: "delay-deliveries", Faults: []Fault{{Kind: FaultDelay, Packet: "publish", Delay: ms(300), Probability: 0.5}}},
	{Name: "throttle-shadow", Faults: []Fault{{Kind: FaultThrottleShadow, Topic: "$aws/things/+/shadow/update", Count: 2}}},
	{Name: "throttle-jobs", Faults: []Fault{{Kind: FaultThrottleJobs, Count: 1}}},
	{Name: "throttle-jobs-update", Faults: []Fault{{Kind: FaultThrottleJobs, Topic: "$aws/things/+/jobs/+/update", Count: 2}}},
	// A jobs update whose PUBACK never comes: the agent's jobs runner
	// waited for it as long as the connection lived (issue 16's lossy-acks
	// stall).
	{Name: "drop-puback-jobs", Faults: []Fault{{Kind: FaultDrop, Packet: "puback", Topic: "$aws/things/+/jobs/+/update", Count: 1}}},
	{Name: "drop-puback-shadow", Faults: []Fault{{Kind: FaultDrop, Packet: "puback", Topic: "$aws/things/+/shadow/update", Count: 1}}},
	{Name: "drop-delivery", Faults: []Fault{{Kind: FaultDrop, Packet: "publish", Topic: "$aws/things/+/jobs/start-next/accepted", Count: 1}}},
	{Name: "expire-session", Faults: []Fault{{Kind: FaultExpireSession, Count: 1}, {Kind: FaultDisconnect, Count: 1}}},
	{Name: "lossy-acks", Timed: true, Faults: []Fault{{Kind: FaultDrop, Packet: "puback", Probability: 0.3}}},
	{Name: "flapping", Timed: true, Faults: []Fault{{Kind: FaultDisconnect, After: ms(400)}, {Kind: FaultExpireSession}}},
	{Name: "slow-suback", Faults: []Fault{{Kind: FaultDelay, Packet: "suback", Delay: ms(2500), Count: 2}, {Kind: FaultDisconnect, Count: 1}}},
	{Name: "duplicate-and-late", Faults: []Fault{{Kind: FaultDuplicate, Probability: 0.5}, {Kind: FaultDelay, Packet: "publish", Delay: ms(500), Probability: 0.3}}},
	{Name: "disconnect", Faults: []Fault{{Kind: FaultDisconnect, After: ms(300), Count: 3}}},
}

// Aimed returns c's faults aimed at clientID ("" aims at every client),
// timed ones lasting active.
func (c FaultClass) Aimed(clientID string, active time.Duration) []Fault {
	out := make([]Fault, len(c.Faults))
	for i, f := range c.Faults {
		f.Client = clientID
		if c.Timed {
			f.Duration = Duration(active)
		}
		out[i] = f
	}
	return out
}
