package broker

import (
	"encoding/json"
	"net"
	"strings"
)

// Disconnect reasons of the presence disconnected event.
const (
	ReasonAuthError                 = "AUTH_ERROR"
	ReasonClientInitiatedDisconnect = "CLIENT_INITIATED_DISCONNECT"
	ReasonClientError               = "CLIENT_ERROR"
	ReasonConnectionLost            = "CONNECTION_LOST"
	ReasonDuplicateClientID         = "DUPLICATE_CLIENTID"
	ReasonKeepAliveTimeout          = "MQTT_KEEP_ALIVE_TIMEOUT"
	ReasonServerError               = "SERVER_ERROR"
	ReasonServerInitiatedDisconnect = "SERVER_INITIATED_DISCONNECT"
	ReasonAPIInitiatedDisconnect    = "API_INITIATED_DISCONNECT"
)

// PresenceEvent is the payload of $aws/events/presence/{connected,disconnected}/<clientId>.
type PresenceEvent struct {
	ClientID                  string `json:"clientId"`
	Timestamp                 int64  `json:"timestamp"` // epoch milliseconds
	EventType                 string `json:"eventType"` // connected | disconnected
	SessionIdentifier         string `json:"sessionIdentifier"`
	PrincipalIdentifier       string `json:"principalIdentifier"` // certificate id
	IPAddress                 string `json:"ipAddress,omitempty"` // connected only
	ClientInitiatedDisconnect *bool  `json:"clientInitiatedDisconnect,omitempty"`
	DisconnectReason          string `json:"disconnectReason,omitempty"`
	VersionNumber             int64  `json:"versionNumber"`
}

// SubscriptionEvent is the payload of $aws/events/subscriptions/{subscribed,unsubscribed}/<clientId>.
type SubscriptionEvent struct {
	ClientID            string   `json:"clientId"`
	Timestamp           int64    `json:"timestamp"`
	EventType           string   `json:"eventType"` // subscribed | unsubscribed
	SessionIdentifier   string   `json:"sessionIdentifier"`
	PrincipalIdentifier string   `json:"principalIdentifier"`
	Topics              []string `json:"topics"`
}

// Event topic prefixes.
const (
	presenceTopic     = "$aws/events/presence/"
	subscriptionTopic = "$aws/events/subscriptions/"
)

// eventsFor reports whether lifecycle events are sent for a client id: AWS
// sends none for ids containing '#' or '+'.
func eventsFor(clientID string) bool { return !strings.ContainsAny(clientID, "#+") }

func (b *Broker) emitPresence(c *conn, connected bool, reason string) {
	if !eventsFor(c.p.ClientID) {
		return
	}
	ev := PresenceEvent{
		ClientID:            c.p.ClientID,
		Timestamp:           b.now().UnixMilli(),
		SessionIdentifier:   c.session,
		PrincipalIdentifier: c.p.CertificateID,
		VersionNumber:       c.version,
	}
	if connected {
		ev.EventType = "connected"
		ev.IPAddress = hostOnly(c.p.RemoteAddr)
	} else {
		ev.EventType = "disconnected"
		ci := reason == ReasonClientInitiatedDisconnect
		ev.ClientInitiatedDisconnect = &ci
		ev.DisconnectReason = reason
	}
	b.emit(presenceTopic+ev.EventType+"/"+c.p.ClientID, ev)
}

func (b *Broker) emitSubscription(c *conn, subscribed bool, topics []string) {
	if len(topics) == 0 || !eventsFor(c.p.ClientID) {
		return
	}
	ev := SubscriptionEvent{
		ClientID:            c.p.ClientID,
		Timestamp:           b.now().UnixMilli(),
		EventType:           "unsubscribed",
		SessionIdentifier:   c.session,
		PrincipalIdentifier: c.p.CertificateID,
		Topics:              topics,
	}
	if subscribed {
		ev.EventType = "subscribed"
	}
	b.emit(subscriptionTopic+ev.EventType+"/"+c.p.ClientID, ev)
}

func (b *Broker) emit(topic string, v any) {
	if !b.subscribed(topic) {
		return // what Publish would deliver to nobody is not encoded
	}
	payload, err := json.Marshal(v)
	if err != nil {
		b.log.Error("encode lifecycle event", "topic", topic, "err", err)
		return
	}
	if err := b.srv.Publish(topic, payload, false, 1); err != nil {
		b.log.Debug("publish lifecycle event", "topic", topic, "err", err)
	}
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// subscribed reports whether any client or inline subscription of the
// server's topic index (which Publish delivers by) matches topic.
func (b *Broker) subscribed(topic string) bool {
	s := b.srv.Topics.Subscribers(topic)
	return len(s.Subscriptions) > 0 || len(s.Shared) > 0 || len(s.InlineSubscriptions) > 0
}
