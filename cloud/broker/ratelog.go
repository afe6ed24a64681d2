package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// What a peer sends ends up in log records (client ids, topics, filters,
// reasons); these bound what one record and one second of records can cost,
// whatever the peer sends.
const (
	// maxLogField is the most bytes of one value that are logged (a valid
	// topic or client id is never cut); longer values are cut and marked
	// (see logField).
	maxLogField = 256
	// logBurst records of one kind are written per logWindow; the rest
	// are counted and the next record written reports them as suppressed.
	logBurst  = 10
	logWindow = time.Second
)

// logField returns s cut to at most maxLogField bytes (on a rune boundary)
// with a marker saying how long it was, so that a 60 KB client id costs a
// log record no more than a normal one.
func logField(s string) string {
	if len(s) <= maxLogField {
		return s
	}
	cut := maxLogField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[truncated, " + strconv.Itoa(len(s)) + " bytes]"
}

// sampler lets logBurst records through per logWindow and counts the others.
type sampler struct {
	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int64
}

// allow reports whether a record may be written now and, if so, how many
// were suppressed since the last one written.
func (s *sampler) allow(now time.Time) (bool, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.start) >= logWindow || now.Before(s.start) {
		s.start, s.n = now, 0
	}
	if s.n >= logBurst {
		s.suppressed++
		return false, 0
	}
	s.n++
	sup := s.suppressed
	s.suppressed = 0
	return true, sup
}

// boundedHandler bounds every record the broker (and mochi inside it)
// logs: string values and messages are cut by logField, errors and other
// values are logged as their text, cut likewise, and an MQTT packet as a
// short summary rather than with its payload.
type boundedHandler struct{ h slog.Handler }

func (b boundedHandler) Enabled(ctx context.Context, l slog.Level) bool { return b.h.Enabled(ctx, l) }

func (b boundedHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, logField(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(boundAttr(a))
		return true
	})
	return b.h.Handle(ctx, out)
}

func (b boundedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	bounded := make([]slog.Attr, len(as))
	for i, a := range as {
		bounded[i] = boundAttr(a)
	}
	return boundedHandler{b.h.WithAttrs(bounded)}
}

func (b boundedHandler) WithGroup(name string) slog.Handler {
	return boundedHandler{b.h.WithGroup(name)}
}

func boundAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); len(s) > maxLogField {
			return slog.String(a.Key, logField(s))
		}
	case slog.KindGroup:
		as := v.Group()
		bounded := make([]any, len(as))
		for i, g := range as {
			bounded[i] = boundAttr(g)
		}
		return slog.Group(a.Key, bounded...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, logField(x.Error()))
		case packets.Packet:
			return slog.String(a.Key, fmt.Sprintf("%s id=%d topic=%q payload=%d bytes",
				packets.PacketNames[x.FixedHeader.Type], x.PacketID, logField(x.TopicName), len(x.Payload)))
		default:
			return slog.String(a.Key, logField(fmt.Sprint(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
