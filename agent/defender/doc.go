// Package defender is the agent's AWS IoT Device Defender reporter: it
// collects the device-side metrics of shared/spec/defender.md from /proc and
// /sys (listening TCP and UDP ports, established TCP connections, network
// counters as deltas since the last report) plus custom metrics (CPU
// temperature, free disk in the state dir and the agent's own counters), and
// publishes them as a JSON (long key names) or CBOR (short key names) report
// on $aws/things/<thing>/defender/metrics/<format>.
//
// The parsers are small and written here rather than taken from
// prometheus/procfs, which would add far more code than the agent needs on a
// Pi Zero. report_id is epoch milliseconds forced above the last persisted
// value, so it increases across restarts even if the clock goes back. A
// rejected report is counted and reported to the caller, never resent.
package defender
