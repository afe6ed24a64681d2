package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Packet identifiers: the client and the server number their packets
// independently (MQTT 3.1.1 §2.3.1, MQTT 5 §2.2.1), so a device may use for
// its SUBSCRIBE, UNSUBSCRIBE or QoS 1 PUBLISH an id that the broker's own
// unacknowledged delivery to it carries, which is what happens when a
// persistent session is resumed (the queued deliveries are numbered from 1,
// and so is the new connection's first SUBSCRIBE). mochi keeps both
// directions in one table, so it would answer such a SUBSCRIBE or
// UNSUBSCRIBE with 0x91 ("packet identifier in use") and not act on it, and
// would forget the delivery when such a PUBLISH is acknowledged (it would
// never be resent). So while the device's packet is processed, the
// delivery with its id is set aside (park) and put back once the
// acknowledgement is decided (unpark): on SUBSCRIBE and UNSUBSCRIBE
// processed, on the PUBLISH's PUBACK, or at the latest when the next packet
// is read or the connection ends. A delivery is never lost this way: if its
// id was taken in the meantime it goes back under a new one.

// park sets aside cl's unacknowledged delivery numbered id, if any. Called
// on the connection's reading goroutine.
func (b *Broker) park(cl *mqtt.Client, c *conn, id uint16) {
	out, ok := cl.State.Inflight.Get(id)
	if !ok || out.FixedHeader.Type != packets.Publish {
		return
	}
	cl.State.Inflight.Delete(id)
	c.parked.Store(&out)
}

// unpark puts back the delivery park set aside.
func (b *Broker) unpark(cl *mqtt.Client, c *conn) {
	out := c.parked.Swap(nil)
	if out == nil {
		return
	}
	if _, taken := cl.State.Inflight.Get(out.PacketID); taken {
		id, err := cl.NextPacketID()
		if err != nil {
			b.log.Warn("delivery dropped: no packet id free", "client", cl.ID, "topic", out.TopicName)
			return
		}
		out.PacketID = uint16(id)
	}
	cl.State.Inflight.Set(*out)
}
