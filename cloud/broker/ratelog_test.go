package broker

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestLogField(t *testing.T) {
	short := strings.Repeat("a", maxLogField)
	if got := logField(short); got != short {
		t.Errorf("a value of %d bytes was changed", maxLogField)
	}
	long := strings.Repeat("é", 40000) // 2 bytes a rune
	got := logField(long)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "…[truncated, 80000 bytes]") || len(got) > maxLogField+40 {
		t.Errorf("logField(80000 bytes) = %q", got)
	}
}

func TestBoundedHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(boundedHandler{slog.NewTextHandler(&buf, nil)}).With("client", strings.Repeat("c", 70000))
	log.Info("refused", "err", errors.New(strings.Repeat("e", 70000)),
		"pk", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "t", Payload: make([]byte, 100000)},
		slog.Group("g", "topic", strings.Repeat("t", 70000)), "n", 3)
	out := buf.String()
	if len(out) > 4*maxLogField+400 {
		t.Errorf("record of %d bytes:\n%s", len(out), out)
	}
	for _, want := range []string{"truncated, 70000 bytes", "payload=100000 bytes", "n=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("record lacks %q:\n%s", want, out)
		}
	}
}

func TestSampler(t *testing.T) {
	var s sampler
	t0 := time.Unix(1000, 0)
	for i := range logBurst {
		if ok, _ := s.allow(t0.Add(time.Duration(i) * time.Millisecond)); !ok {
			t.Fatalf("record %d of the first window refused", i)
		}
	}
	for range 5 {
		if ok, _ := s.allow(t0.Add(500 * time.Millisecond)); ok {
			t.Fatal("record past the burst allowed")
		}
	}
	if ok, suppressed := s.allow(t0.Add(logWindow)); !ok || suppressed != 5 {
		t.Errorf("next window: allowed %v, suppressed %d, want true, 5", ok, suppressed)
	}
}
