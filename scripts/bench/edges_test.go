package main

import (
	"testing"
	"time"
)

// Only a report stored after the "0" was written shows that the agent saw
// it; an earlier one with motion false (the report that armed the alarm)
// must not end the wait.
func TestMotionClearedSince(t *testing.T) {
	since := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	report := func(at time.Time, motion any) event {
		return event{at: at, reported: map[string]any{"sensors": map[string]any{"motion": map[string]any{"active": motion}}}}
	}
	for _, tc := range []struct {
		name string
		ev   event
		want bool
	}{
		{"cleared after the write", report(since.Add(time.Millisecond), false), true},
		{"cleared at the write", report(since, false), true},
		{"stale report from before the write", report(since.Add(-time.Millisecond), false), false},
		{"still active", report(since.Add(time.Millisecond), true), false},
		{"no sensors section", event{at: since.Add(time.Millisecond), reported: map[string]any{"alarm": map[string]any{"armed": true}}}, false},
	} {
		if got := motionClearedSince(since)(tc.ev); got != tc.want {
			t.Errorf("%s: motionClearedSince = %v, want %v", tc.name, got, tc.want)
		}
	}
}
