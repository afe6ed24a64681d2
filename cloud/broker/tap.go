package broker

import (
	"fmt"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TapFunc receives every message a tap's filter matches: device publishes,
// iotsim's own (shadow, jobs, rules) and lifecycle events. It runs on the
// publisher's goroutine, in the broker's publish path: it must return at
// once (hand the message to a bounded buffer, count what does not fit)
// and must not modify payload.
type TapFunc func(topic string, payload []byte)

var tapIDs atomic.Int64

// Tap subscribes fn, in-process, to every message matching filter (MQTT
// matching, as a subscribing client would see them, without policy
// checks). It is what iotsim's web console watches the broker with. The
// returned stop removes the tap; it is idempotent.
func (b *Broker) Tap(filter string, fn TapFunc) (stop func(), err error) {
	if err := CheckFilter(filter); err != nil {
		return nil, fmt.Errorf("tap %q: %w", filter, err)
	}
	if fn == nil {
		return nil, fmt.Errorf("tap %q: no function", filter)
	}
	// mochi keys inline subscriptions by filter and identifier.
	id := int(tapIDs.Add(1))
	h := func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	}
	if err := b.srv.Subscribe(filter, id, h); err != nil {
		return nil, fmt.Errorf("tap %q: %w", filter, err)
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			_ = b.srv.Unsubscribe(filter, id)
		}
	}, nil
}
