// Package broker is iotsim's MQTT message broker: an embedded mochi-mqtt
// server behind mutual TLS that behaves like AWS IoT Core's device gateway.
//
// What it adds on top of the MQTT specification, following
// shared/spec/connection-and-policies.md and shared/spec/mqtt-limits.md:
//
//   - TLS 1.2+ with a required client certificate signed by the configured
//     CA, an RSA and an ECDSA server certificate, no session tickets, and the
//     ALPN names AWS accepts on 443. MQTT is served for x-amzn-mqtt-ca or no
//     ALPN; other protocols are closed for now. SNI is recorded.
//   - After the handshake the client certificate is looked up in the
//     registry by its certificate id. Unknown or non-ACTIVE certificates,
//     client ids over 128 bytes or starting with '$', and CONNECTs the
//     Authorizer refuses are closed without a CONNACK (MQTT 3.1.1, as AWS
//     does) or answered with CONNACK 0x87 / 0x85 (MQTT 5). An empty client
//     id gets CONNACK 2 (0x85 for MQTT 5).
//   - A denied PUBLISH or SUBSCRIBE closes the connection (MQTT 3.1.1); MQTT
//     5 clients get PUBACK / SUBACK 0x87 instead. iot:Receive is checked on
//     every delivery; undeliverable messages are dropped silently.
//   - AWS's limits: maximum QoS 1 (a QoS 2 PUBLISH closes the connection, a
//     QoS 2 SUBSCRIBE is granted QoS 1), topics of at most 256 bytes and 7
//     slashes without wildcards, at most 8 filters per SUBSCRIBE and 50
//     subscriptions per connection, payloads of at most 128 KiB, keep-alive
//     clamped to 30..1200 s (0 means 1200), session expiry capped at 3600 s,
//     '#' not matching its parent level, retained messages delivered only to
//     exact-match filters, no RETAIN on $-topics.
//   - At most one accepted CONNECT per second per client id (AWS's
//     limit, Options.ConnectInterval); a faster one is refused like any
//     other (MQTT 5: CONNACK 0x9F). Per-client-id state (Defender
//     counters, lifecycle versionNumber) exists only for accepted
//     CONNECTs and is freed an hour after the client id's last connection
//     ends, so refused CONNECTs leave nothing behind.
//   - Acknowledgements carry only reason codes defined for the client's
//     protocol version, and a device's packet ids never collide with the
//     broker's deliveries of a resumed session (packetid.go). No message
//     expiry is invented for messages published without one.
//   - Accept errors (e.g. out of file descriptors) pause the listener
//     (5 ms doubling to 1 s) and never stop it. Log records are bounded
//     whatever a peer sends, and refusals are logged at most 10 a second;
//     Stats counts what was refused or left out.
//   - Lifecycle events on $aws/events/presence/{connected,disconnected}/<clientId>
//     and $aws/events/subscriptions/{subscribed,unsubscribed}/<clientId>.
//   - When a certificate leaves ACTIVE, every connection using it is closed
//     at once.
//   - Faults on demand (faults.go, faultconn.go): AddFault makes the broker
//     drop or delay an acknowledgement or delivery, refuse or throttle
//     CONNECTs, close connections after N packets, on a PUBLISH or at an
//     age, deliver twice, throttle the Shadow and Jobs services, or expire
//     a persistent session, for the client ids and topics a Fault aims at.
//     Every injection is logged, counted and listed by Faults. Writes go
//     through a net.Conn wrapper that passes them on untouched while no
//     fault is active.
//
// Services (shadow, jobs, ...) plug in with Handle (see every authorized
// device PUBLISH on a filter), Publish (to all authorized subscribers) and
// PublishTo (to one client).
package broker
