// Package outbox is the agent's durable queue of QoS 1 publishes.
//
// Telemetry, warnings and alarms are appended here before anything tries to
// send them, so that nothing is lost while the device is offline, across an
// agent restart or through a power cut (every Append and Ack is one bbolt
// transaction, committed with fsync). The transport drains the queue in ID
// order while connected and acknowledges a message only after the broker's
// PUBACK: delivery is at least once, never at most once.
//
// The queue is bounded by message count and by bytes (topic plus payload).
// When it is full, the oldest telemetry goes first; alarms (which include
// warnings) are dropped only when no telemetry is left. Drops are counted,
// and the counters survive a restart.
//
// A disk that refuses writes (no space left, I/O error, quota, read-only)
// loses nothing silently: messages wait in a bounded memory queue (where
// telemetry goes before warnings before alarms), the drainer delivers them
// from there, Run retries the disk with backoff and moves them to disk as
// soon as it takes writes, and Health says what is going on meanwhile.
package outbox
