// Package transport is the agent's MQTT connection to AWS IoT Core (or
// iotsim): a wrapper around paho that adds mutual TLS from a crypto.Signer,
// its own reconnect loop with exponential backoff and full jitter,
// re-subscription after every connect, a single ordered dispatch goroutine
// for incoming messages, ctx-aware publishes, and draining of the durable
// outbox (agent/outbox).
//
// Delivery from the outbox is at least once: a message is acknowledged in the
// outbox only after its PUBACK. Each connection gets a fresh paho client, so
// paho's in-memory store never holds the only copy of a message; whatever was
// in flight when a connection dropped is still in the outbox and is sent
// again after the reconnect (duplicates are possible, loss is not).
//
// A PUBACK or SUBACK that does not come within the ack timeout ends the
// connection (ErrNoAck): MQTT resends an unacknowledged PUBLISH only on a
// new connection, so waiting on would wait as long as the connection
// lives. This holds for outbox publishes and for Publish (shadow and jobs
// requests) alike.
//
// paho's ERROR, CRITICAL and WARN output goes to the Options.Logger of the
// Client whose Run started last (paho's loggers are process-wide), as Warn
// (ERROR, WARN) or Error (CRITICAL) with component=paho.
package transport
