package broker

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// ErrNotAuthorized is returned by authorizers that refuse a CONNECT.
var ErrNotAuthorized = errors.New("broker: not authorized")

// Principal is the authenticated identity behind one MQTT connection.
type Principal struct {
	ClientID      string
	CertificateID string
	// ThingName is the attached thing whose name equals ClientID, or "" (AWS's
	// non-exclusive thing association).
	ThingName   string
	RemoteAddr  string
	Certificate *x509.Certificate
	// ServerName is the SNI the client sent ("" if none).
	ServerName string
}

// Authorizer decides every action of a connection. The IoT policy engine
// implements it; ThingScoped is the interim rule.
type Authorizer interface {
	// Connect is checked on every CONNECT; an error refuses the connection.
	Connect(p *Principal) error
	// Publish is checked on every PUBLISH (and on the Last Will at CONNECT).
	Publish(p *Principal, topic string, retain bool) bool
	// Subscribe is checked once per filter of every SUBSCRIBE (the literal
	// filter, wildcards included).
	Subscribe(p *Principal, filter string) bool
	// Receive is checked on every delivery to the client.
	Receive(p *Principal, topic string) bool
}

// ThingScoped is the interim authorizer: a certificate attached to thing T
// connects only as client ID T, and may publish, subscribe and receive only
// on $aws/things/T/... and on T's own application topics (topics and filters
// with a literal level equal to T, such as telemetry/T or alarms/T/x). A
// filter whose wildcards could reach another thing's topics (#, +/x) is
// denied.
type ThingScoped struct{}

// Connect allows only client IDs naming a thing the certificate is attached to.
func (ThingScoped) Connect(p *Principal) error {
	if p.ThingName == "" {
		return fmt.Errorf("client id %q is not a thing attached to certificate %.12s: %w", p.ClientID, p.CertificateID, ErrNotAuthorized)
	}
	return nil
}

// Publish allows the thing's own topics.
func (ThingScoped) Publish(p *Principal, topic string, _ bool) bool {
	return thingOwnsTopic(p.ThingName, topic)
}

// Subscribe allows filters that can only match the thing's own topics.
func (ThingScoped) Subscribe(p *Principal, filter string) bool {
	t := p.ThingName
	if t == "" {
		return false
	}
	filter = innerFilter(filter)
	if strings.HasPrefix(filter, "$aws/things/"+t+"/") {
		return true
	}
	if strings.HasPrefix(filter, "$") {
		return false
	}
	return hasLevel(filter, t)
}

// Receive allows the thing's own topics.
func (ThingScoped) Receive(p *Principal, topic string) bool {
	return thingOwnsTopic(p.ThingName, topic)
}

func thingOwnsTopic(t, topic string) bool {
	if t == "" {
		return false
	}
	if strings.HasPrefix(topic, "$aws/things/"+t+"/") {
		return true
	}
	if strings.HasPrefix(topic, "$") {
		return false
	}
	return hasLevel(topic, t)
}

func hasLevel(s, level string) bool {
	for l := range strings.SplitSeq(s, "/") {
		if l == level {
			return true
		}
	}
	return false
}
