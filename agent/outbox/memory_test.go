package outbox

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/internal/tmpfstest"
)

// The memory queue, when full, drops telemetry before warnings before
// alarms, the oldest of a class first; a newcomer less precious than all
// that waits is dropped itself. Every drop is counted by class.
func TestMemoryQueueClassPriorities(t *testing.T) {
	ob, _, _ := newOutbox(t, Options{MemoryMessages: 4})
	var dropped []string
	add := func(name string, c Class) {
		t.Helper()
		ob.mu.Lock()
		id := ob.toMemoryLocked("t/"+name, []byte(name), c)
		ob.mu.Unlock()
		if id == 0 {
			dropped = append(dropped, name)
		}
	}
	queued := func() []string {
		t.Helper()
		var out []string
		for _, m := range ob.mem.msgs {
			out = append(out, string(m.Payload))
		}
		return out
	}
	steps := []struct {
		name  string
		class Class
		want  []string
	}{
		{"T0", Telemetry, []string{"T0"}},
		{"W1", Warning, []string{"T0", "W1"}},
		{"A1", Alarm, []string{"T0", "W1", "A1"}},
		{"W2", Warning, []string{"T0", "W1", "A1", "W2"}},
		{"A2", Alarm, []string{"W1", "A1", "W2", "A2"}},     // telemetry goes first
		{"T1", Telemetry, []string{"W1", "A1", "W2", "A2"}}, // less precious than all: dropped itself
		{"A3", Alarm, []string{"A1", "W2", "A2", "A3"}},     // then the oldest warning
		{"W3", Warning, []string{"A1", "A2", "A3", "W3"}},   // a warning replaces an older warning
		{"A4", Alarm, []string{"A1", "A2", "A3", "A4"}},
		{"W4", Warning, []string{"A1", "A2", "A3", "A4"}}, // only alarms left: dropped itself
		{"A5", Alarm, []string{"A2", "A3", "A4", "A5"}},   // an alarm replaces the oldest alarm
	}
	for _, s := range steps {
		add(s.name, s.class)
		if diff := cmp.Diff(s.want, queued()); diff != "" {
			t.Fatalf("after %s (-want +got):\n%s", s.name, diff)
		}
	}
	if diff := cmp.Diff([]string{"T1", "W4"}, dropped); diff != "" {
		t.Errorf("newcomers dropped (-want +got):\n%s", diff)
	}
	st := ob.Stats()
	if st.DroppedTelemetry != 2 || st.DroppedWarning != 4 || st.DroppedAlarm != 1 || st.Dropped != 7 || st.Memory != 4 {
		t.Errorf("stats = %+v, want 2 telemetry, 4 warnings, 1 alarm dropped (7), 4 in memory", st)
	}
}

// appendUntilRefused appends padding telemetry until the disk refuses a
// write (bbolt reuses the pages it has, so a few appends still fit on a
// full filesystem) and returns the topics that went to disk.
func appendUntilRefused(t *testing.T, ob *Outbox) []string {
	t.Helper()
	var onDisk []string
	for i := 0; i < 1000; i++ {
		topic := fmt.Sprintf("pad/%d", i)
		mustAppend(t, ob, topic, strings.Repeat("p", 200), Telemetry)
		if ob.Health().DiskError != "" {
			return onDisk
		}
		onDisk = append(onDisk, topic)
	}
	t.Fatal("the full disk took 1000 appends")
	return nil
}

// On a real full tmpfs: messages wait in memory in order, the drainer
// sees them after what is on disk and can deliver them straight away;
// deliveries of disk messages are remembered; once space returns, Run
// moves memory to disk, in order, and the outbox says it is healthy.
func TestFullDiskSpillsToMemoryAndRecovers(t *testing.T) {
	dir := tmpfstest.Mount(t, 1<<20)
	path := filepath.Join(dir, "agent.db")
	db := openDB(t, path)
	t.Cleanup(func() { db.Close() }) // before the unmount
	ob, err := Open(db, Options{}, fixedClock())
	if err != nil {
		t.Fatal(err)
	}
	free := tmpfstest.Fill(t, dir)
	pads := appendUntilRefused(t, ob)
	h := ob.Health()
	if h.DiskError != "no space left on device" || h.Memory != 1 || h.Degraded() == "" {
		t.Fatalf("health after the refused write = %+v", h)
	}
	want := append(append([]string{}, pads...), fmt.Sprintf("pad/%d", len(pads)))
	for i := 0; i < 20; i++ {
		mustAppend(t, ob, fmt.Sprintf("alarm/%d", i), "{}", Alarm)
		want = append(want, fmt.Sprintf("alarm/%d", i))
	}
	if diff := cmp.Diff(want, topics(t, ob)); diff != "" {
		t.Fatalf("Peek on a full disk (-want +got):\n%s", diff)
	}

	// The broker takes the oldest disk message and two from memory, one of
	// which is moved to disk before its PUBACK comes.
	msgs, err := ob.Peek(len(pads) + 3)
	if err != nil {
		t.Fatal(err)
	}
	first, inMem := msgs[0], msgs[len(pads)+1:]
	if err := ob.Ack(first.ID, inMem[0].ID); err != nil {
		t.Fatalf("Ack on a full disk: %v", err)
	}
	want = append(append(want[1:len(pads)], want[len(pads)]), want[len(pads)+2:]...)
	if diff := cmp.Diff(want, topics(t, ob)); diff != "" {
		t.Fatalf("Peek after acks on a full disk (-want +got):\n%s", diff)
	}

	free()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ob.Run(ctx) }()
	for h := ob.Health(); h.DiskError != "" || h.Memory != 0 || h.Degraded() != ""; h = ob.Health() {
		select {
		case <-ob.Changes():
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatalf("no recovery within 20 s of freeing space: %+v", ob.Health())
		}
	}
	if err := ob.Ack(inMem[1].ID); err != nil { // its PUBACK, after it moved
		t.Fatal(err)
	}
	want = append(want[:len(pads)], want[len(pads)+1:]...)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := ob.Stats()
	if st.Memory != 0 || st.Len != len(want) || st.Dropped != 0 {
		t.Errorf("stats after recovery = %+v, want %d on disk, nothing in memory or dropped", st, len(want))
	}

	if h := ob.Health(); h.WriteFailures == 0 || h.LastWriteError != "no space left on device" {
		t.Errorf("health after recovery = %+v, want the refused writes remembered", h)
	}

	// What is on disk is what a restart finds.
	db.Close()
	db2 := openDB(t, path)
	t.Cleanup(func() { db2.Close() })
	ob, err = Open(db2, Options{}, fixedClock())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, topics(t, ob)); diff != "" {
		t.Errorf("after a restart (-want +got):\n%s", diff)
	}
}
