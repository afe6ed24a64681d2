package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The load generator speaks just enough MQTT 3.1.1 by hand: CONNECT,
// CONNACK, SUBSCRIBE, SUBACK, PUBLISH at QoS 0 and 1, PUBACK and
// DISCONNECT. A full client per simulated device would measure the
// client, not iotsim.

// MQTT control packet types (high nibble of the first byte).
const (
	pktConnect = 1
	pktConnack = 2
	pktPublish = 3
	pktPuback  = 4
	// pktSubscribe's fixed header carries the flags 0b0010.
	pktSubscribe  = 8
	pktSuback     = 9
	pktDisconnect = 14
)

// maxPacket bounds what readPacket accepts (AWS's limit is about 146 KiB).
const maxPacket = 256 << 10

var (
	errMalformed = errors.New("mqtt: malformed packet")
	errTooBig    = errors.New("mqtt: packet too large")
)

func appendRemLen(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// connectPacket is a clean-session CONNECT with no credentials.
func connectPacket(clientID string, keepalive uint16) []byte {
	var body []byte
	body = appendStr(body, "MQTT")
	body = append(body, 4, 0x02) // level 4, clean session
	body = binary.BigEndian.AppendUint16(body, keepalive)
	body = appendStr(body, clientID)
	return append(appendRemLen([]byte{pktConnect << 4}, len(body)), body...)
}

// publishPacket is a QoS 1 PUBLISH.
func publishPacket(topic string, id uint16, payload []byte) []byte {
	n := 2 + len(topic) + 2 + len(payload)
	b := appendRemLen([]byte{pktPublish<<4 | 0x02}, n)
	b = appendStr(b, topic)
	b = binary.BigEndian.AppendUint16(b, id)
	return append(b, payload...)
}

// subscribePacket subscribes to filters, each at QoS 1.
func subscribePacket(id uint16, filters ...string) []byte {
	body := binary.BigEndian.AppendUint16(nil, id)
	for _, f := range filters {
		body = appendStr(body, f)
		body = append(body, 1)
	}
	return append(appendRemLen([]byte{pktSubscribe<<4 | 0x02}, len(body)), body...)
}

// pubackPacket acknowledges a QoS 1 PUBLISH.
func pubackPacket(id uint16) []byte {
	return binary.BigEndian.AppendUint16([]byte{pktPuback << 4, 2}, id)
}

// disconnectPacket ends a session politely.
func disconnectPacket() []byte { return []byte{pktDisconnect << 4, 0} }

// parsePublish splits a PUBLISH body into its topic, packet identifier
// (0 at QoS 0) and payload.
func parsePublish(flags byte, body []byte) (topic string, id uint16, payload []byte, err error) {
	if len(body) < 2 {
		return "", 0, nil, fmt.Errorf("%w: PUBLISH of %d bytes", errMalformed, len(body))
	}
	n := int(binary.BigEndian.Uint16(body))
	rest := body[2:]
	if n > len(rest) {
		return "", 0, nil, fmt.Errorf("%w: topic length %d of %d bytes", errMalformed, n, len(rest))
	}
	topic, rest = string(rest[:n]), rest[n:]
	if qos := flags >> 1 & 3; qos > 0 {
		if len(rest) < 2 {
			return "", 0, nil, fmt.Errorf("%w: PUBLISH without a packet identifier", errMalformed)
		}
		id, rest = binary.BigEndian.Uint16(rest), rest[2:]
	}
	return topic, id, rest, nil
}

// subackCodes checks a SUBACK body for id and returns its return codes.
func subackCodes(typ byte, body []byte, id uint16) ([]byte, error) {
	if typ != pktSuback || len(body) < 3 {
		return nil, fmt.Errorf("%w: want SUBACK, got type %d with %d bytes", errMalformed, typ, len(body))
	}
	if got := binary.BigEndian.Uint16(body); got != id {
		return nil, fmt.Errorf("%w: SUBACK %d, want %d", errMalformed, got, id)
	}
	return body[2:], nil
}

// readPacket reads one packet and returns its type, flags and body.
func readPacket(r *bufio.Reader) (typ, flags byte, body []byte, err error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, 0, nil, fmt.Errorf("%w: remaining length over 4 bytes", errMalformed)
		}
		d, err := r.ReadByte()
		if err != nil {
			return 0, 0, nil, err
		}
		n += int(d&0x7f) * mult
		mult *= 128
		if d&0x80 == 0 {
			break
		}
	}
	if n > maxPacket {
		return 0, 0, nil, fmt.Errorf("%w: %d bytes", errTooBig, n)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, 0, nil, err
	}
	return h >> 4, h & 0x0f, body, nil
}

// connackCode checks a CONNACK body and returns its return code.
func connackCode(typ byte, body []byte) (byte, error) {
	if typ != pktConnack || len(body) != 2 {
		return 0, fmt.Errorf("%w: want CONNACK, got type %d with %d bytes", errMalformed, typ, len(body))
	}
	return body[1], nil
}

// pubackID checks a PUBACK body and returns its packet identifier.
func pubackID(typ byte, body []byte) (uint16, error) {
	if typ != pktPuback || len(body) < 2 {
		return 0, fmt.Errorf("%w: want PUBACK, got type %d with %d bytes", errMalformed, typ, len(body))
	}
	return binary.BigEndian.Uint16(body), nil
}
