package broker

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTap: a tap sees a device's publish, a service publish and the
// lifecycle events, each once per tap; "#" matches $aws topics too (mochi
// has only $SYS apart), and a stopped tap sees nothing more.
func TestTap(t *testing.T) {
	e := newEnv(t, allowAll{})
	type msg struct{ filter, topic, payload string }
	var mu sync.Mutex
	var got []msg
	seen := make(chan struct{}, 16)
	tap := func(filter string) func() {
		stop, err := e.b.Tap(filter, func(topic string, payload []byte) {
			mu.Lock()
			got = append(got, msg{filter, topic, string(payload)})
			mu.Unlock()
			seen <- struct{}{}
		})
		if err != nil {
			t.Fatal(err)
		}
		return stop
	}
	stopAll := tap("#")
	tap("$aws/events/presence/+/+")
	if _, err := e.b.Tap("a/#/b", func(string, []byte) {}); err == nil {
		t.Error("Tap accepted the invalid filter a/#/b")
	}

	cert, _ := e.device("dev1")
	c := e.rawConnected(cert, "dev1")
	if err := c.publish("alarms/dev1", []byte(`{"alarm":"motion"}`), 0, false); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Publish("notifications/dev1", []byte(`n`), 1); err != nil {
		t.Fatal(err)
	}
	want := map[msg]bool{
		{"$aws/events/presence/+/+", "$aws/events/presence/connected/dev1", ""}: true,
		{"#", "$aws/events/presence/connected/dev1", ""}:                        true,
		{"#", "alarms/dev1", `{"alarm":"motion"}`}:                              true,
		{"#", "notifications/dev1", "n"}:                                        true,
	}
	for range want {
		select {
		case <-seen:
		case <-time.After(waitFor):
			mu.Lock()
			t.Fatalf("tap saw %v, want %d messages", got, len(want))
		}
	}
	stopAll()
	stopAll()
	if err := e.b.Publish("notifications/dev1", []byte(`after stop`), 1); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, g := range got {
		if strings.HasPrefix(g.topic, "$aws/events/") {
			g.payload = ""
		}
		if !want[g] {
			t.Errorf("unexpected or repeated message %+v", g)
		}
		delete(want, g)
	}
	if len(got) != 4 {
		t.Errorf("got %d messages, want 4: %v", len(got), got)
	}
}
