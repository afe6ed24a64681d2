// Package defender is iotsim's AWS IoT Device Defender: it ingests device
// metrics reports (JSON or CBOR, long or short key names) on
// $aws/things/<thing>/defender/metrics/<format>, validates them as
// shared/spec/defender.md §3 says, answers on .../accepted or .../rejected
// in AWS's format, and keeps the last reports of every thing in memory.
//
// A small Detect evaluates security profiles (stored in the database,
// attached to all things, registered or unregistered things, or thing
// groups) over the device-side metrics of every report, the message size of
// every message and, on a ticker, the cloud-side counters the broker keeps
// (messages sent and received, authorization failures, connection attempts,
// disconnects, source IP), with consecutive datapoints to alarm and to
// clear. Active violations and violation events are kept in memory.
// Statistical and ML-Detect behaviours are stored but not evaluated.
//
// A small Audit on demand reports certificates shared by several things,
// certificates about to expire and overly permissive policies.
package defender
