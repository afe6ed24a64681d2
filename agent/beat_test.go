package agent

import (
	"testing"
	"time"
)

// The main loop's heartbeat stops while the environment read, which runs
// on its own goroutine, hangs: the health check still sees a stuck sensor.
func TestBeat(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	before := now.Add(-time.Minute)
	for _, tc := range []struct {
		name     string
		envSince time.Time // zero: no read under way
		want     time.Time
	}{
		{"no read", time.Time{}, now},
		{"read just begun", now.Add(-30 * time.Millisecond), now},
		{"read as old as a heartbeat period", now.Add(-heartbeatEvery), now},
		{"read hangs", now.Add(-heartbeatEvery - time.Millisecond), before},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{}
			a.heartbeat.Store(before.UnixNano())
			if !tc.envSince.IsZero() {
				a.envSince.Store(tc.envSince.UnixNano())
			}
			a.beat(now)
			if got := time.Unix(0, a.heartbeat.Load()).UTC(); !got.Equal(tc.want) {
				t.Errorf("heartbeat = %v, want %v", got, tc.want)
			}
		})
	}
}
