package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// Record layout (big endian), the value stored under an 8-byte ID key:
//
//	[0]      format version (1)
//	[1]      class
//	[2:10]   enqueue time, Unix nanoseconds (int64)
//	[10:12]  topic length
//	[12:12+n] topic
//	[...]    payload
//	[last 4] CRC-32C of everything before it
const (
	recordVersion = 1
	headerLen     = 12
	crcLen        = 4
	keyLen        = 8
	maxTopicLen   = math.MaxUint16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt is wrapped by every decode failure.
var errCorrupt = errors.New("corrupt outbox record")

func encodeKey(id uint64) []byte {
	var k [keyLen]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

func decodeKey(k []byte) (uint64, error) {
	if len(k) != keyLen {
		return 0, fmt.Errorf("%w: key is %d bytes, want %d", errCorrupt, len(k), keyLen)
	}
	id := binary.BigEndian.Uint64(k)
	if id == 0 {
		return 0, fmt.Errorf("%w: id 0", errCorrupt)
	}
	return id, nil
}

// encodeRecord returns the stored form of m (m.ID is the key, not part of
// the value). The caller has checked len(m.Topic) <= maxTopicLen.
func encodeRecord(m Message) []byte {
	b := make([]byte, headerLen+len(m.Topic)+len(m.Payload)+crcLen)
	b[0] = recordVersion
	b[1] = byte(m.Class)
	binary.BigEndian.PutUint64(b[2:10], uint64(m.Enqueued.UnixNano()))
	binary.BigEndian.PutUint16(b[10:12], uint16(len(m.Topic)))
	n := headerLen + copy(b[headerLen:], m.Topic)
	n += copy(b[n:], m.Payload)
	binary.BigEndian.PutUint32(b[n:], crc32.Checksum(b[:n], castagnoli))
	return b
}

// checkRecord checks a stored value as decodeRecord does (length,
// checksum, version, class, topic length) without copying anything, and
// returns its class and size (topic and payload, as the bounds count it).
func checkRecord(v []byte) (Class, int64, error) {
	if len(v) < headerLen+crcLen {
		return 0, 0, fmt.Errorf("%w: %d bytes is shorter than the header", errCorrupt, len(v))
	}
	body := v[:len(v)-crcLen]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(v[len(body):]); got != want {
		return 0, 0, fmt.Errorf("%w: checksum %08x, want %08x", errCorrupt, got, want)
	}
	if body[0] != recordVersion {
		return 0, 0, fmt.Errorf("%w: version %d", errCorrupt, body[0])
	}
	class := Class(body[1])
	if class > Alarm {
		return 0, 0, fmt.Errorf("%w: class %d", errCorrupt, class)
	}
	tl := int(binary.BigEndian.Uint16(body[10:12]))
	if tl == 0 || headerLen+tl > len(body) {
		return 0, 0, fmt.Errorf("%w: topic length %d", errCorrupt, tl)
	}
	return class, int64(len(body) - headerLen), nil
}

// decodeRecord parses a stored value. It copies what it keeps, so v may be
// a bbolt page that is only valid during the transaction.
func decodeRecord(id uint64, v []byte) (Message, error) {
	class, _, err := checkRecord(v)
	if err != nil {
		return Message{}, err
	}
	body := v[:len(v)-crcLen]
	tl := int(binary.BigEndian.Uint16(body[10:12]))
	return Message{
		ID:       id,
		Topic:    string(body[headerLen : headerLen+tl]),
		Payload:  append([]byte{}, body[headerLen+tl:]...),
		Class:    class,
		Enqueued: time.Unix(0, int64(binary.BigEndian.Uint64(body[2:10]))),
	}, nil
}
