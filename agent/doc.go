// Package agent is the iotagent daemon: Agent.Run connects to AWS IoT Core
// (or iotsim) over mutual TLS, keeps the device shadow in sync with the
// chocolate box's sensors and outputs, and publishes telemetry, warnings
// and alarms through a durable outbox so that nothing is lost offline.
//
// The services it wires live in subpackages: config (the config file),
// transport (MQTT over TLS with backoff and the outbox), outbox (the
// durable queue) and shadow (the device side of the shadow protocol).
package agent
