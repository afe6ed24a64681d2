package transport

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPacer(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		burst int
		at    []time.Duration // when each publish is asked for
		want  []time.Duration
	}{
		{name: "a burst goes at once, then the rate", burst: 3, at: []time.Duration{0, 0, 0, 0, 0},
			want: []time.Duration{0, 0, 0, 20 * ms, 40 * ms}},
		{name: "burst 1 is plain spacing", burst: 1, at: []time.Duration{0, 0, 5 * ms},
			want: []time.Duration{0, 20 * ms, 35 * ms}},
		{name: "a quiet spell refills the burst", burst: 2, at: []time.Duration{0, 0, 0, time.Second, time.Second, time.Second},
			want: []time.Duration{0, 0, 20 * ms, 0, 0, 20 * ms}},
		{name: "a partly refilled burst", burst: 3, at: []time.Duration{0, 0, 0, 20 * ms, 20 * ms},
			want: []time.Duration{0, 0, 0, 0, 20 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pacer{interval: 20 * ms, burst: tt.burst}
			var got []time.Duration
			for _, at := range tt.at {
				got = append(got, p.delay(t0.Add(at)))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("delays (-want +got):\n%s", diff)
			}
		})
	}
	if d := (&pacer{}).delay(t0); d != 0 {
		t.Errorf("no limit: delay %v", d)
	}
}
