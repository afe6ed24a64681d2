package broker

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Reason codes an acknowledgement may carry (MQTT 3.1.1 §3.9.3; MQTT 5
// §3.4.2.1, §3.9.3, §3.11.3). MQTT 3.1.1 PUBACK and UNSUBACK carry none.
var (
	subackCodes311 = codeSet(0x00, 0x01, 0x02, 0x80)
	subackCodes5   = codeSet(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
	pubackCodes5   = codeSet(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)
	unsubackCodes5 = codeSet(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
	connackCodes5  = codeSet(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C,
		0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
)

// connackCodes311 maps MQTT 5 CONNACK codes to the MQTT 3.1.1 return code
// of the same meaning (§3.2.2.3); any other refusal is "not authorized",
// as AWS answers what it refuses.
var connackCodes311 = map[byte]byte{0x84: 1, 0x85: 2, 0x88: 3, 0x89: 3, 0x86: 4, 0x87: 5}

func codeSet(codes ...byte) (s [256]bool) {
	for _, c := range codes {
		s[c] = true
	}
	return s
}

// checkAckCodes is the last check before an acknowledgement goes out: a
// reason code the client's protocol version does not define becomes
// "unspecified error" (0x80), counted and logged, except for mochi's PUBACK
// "granted QoS 1" (0x01), which means success (0x00), and an MQTT 5 CONNACK
// code sent to an MQTT 3.1.1 client (mochi answers a 3.1.1 CONNECT with a
// QoS 2 will with 0x9B), which becomes its 3.1.1 equivalent. The broker's own
// decisions never produce one; this keeps a client from ever reading an
// undefined code, whatever mochi does.
func (b *Broker) checkAckCodes(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	v5 := cl.Properties.ProtocolVersion == 5
	switch pk.FixedHeader.Type {
	case packets.Connack:
		switch {
		case v5 && !connackCodes5[pk.ReasonCode]:
			b.invalidCode(cl, pk, pk.ReasonCode)
			pk.ReasonCode = packets.ErrUnspecifiedError.Code
		case !v5 && pk.ReasonCode > 5:
			code, ok := connackCodes311[pk.ReasonCode]
			if !ok {
				code = 5
			}
			pk.ReasonCode = code
		}
	case packets.Puback:
		if !v5 || pubackCodes5[pk.ReasonCode] {
			return pk
		}
		if pk.ReasonCode == packets.CodeGrantedQos1.Code {
			pk.ReasonCode = packets.CodeSuccess.Code
			return pk
		}
		b.invalidCode(cl, pk, pk.ReasonCode)
		pk.ReasonCode = packets.ErrUnspecifiedError.Code
	case packets.Suback, packets.Unsuback:
		valid := &subackCodes311
		switch {
		case pk.FixedHeader.Type == packets.Unsuback && !v5:
			return pk // no reason codes on the wire
		case pk.FixedHeader.Type == packets.Unsuback:
			valid = &unsubackCodes5
		case v5:
			valid = &subackCodes5
		}
		var codes []byte
		for i, c := range pk.ReasonCodes {
			if valid[c] {
				continue
			}
			if codes == nil {
				codes = append([]byte(nil), pk.ReasonCodes...)
			}
			b.invalidCode(cl, pk, c)
			codes[i] = packets.ErrUnspecifiedError.Code
		}
		if codes != nil {
			pk.ReasonCodes = codes
		}
	}
	return pk
}

func (b *Broker) invalidCode(cl *mqtt.Client, pk packets.Packet, code byte) {
	b.stats.invalidCodes.Add(1)
	if ok, suppressed := b.codeLog.allow(time.Now()); ok {
		b.log.Warn("undefined reason code replaced by 0x80", "client", cl.ID, "packet", packets.PacketNames[pk.FixedHeader.Type],
			"code", code, "protocol_version", cl.Properties.ProtocolVersion, "suppressed", suppressed)
	} else {
		b.stats.suppressed.Add(1)
	}
}
