package transport

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBackoff(t *testing.T) {
	highest := func(n int64) int64 { return n - 1 }
	lowest := func(int64) int64 { return 0 }
	tests := []struct {
		name     string
		min, max time.Duration
		rand     func(int64) int64
		steps    int
		resetAt  int // call reset before this step (0: never)
		want     []time.Duration
	}{
		{
			name: "upper bound doubles to the cap",
			min:  500 * time.Millisecond, max: 2 * time.Minute, rand: highest, steps: 12,
			want: []time.Duration{
				500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
				16 * time.Second, 32 * time.Second, 64 * time.Second, 2 * time.Minute, 2 * time.Minute,
				2 * time.Minute, 2 * time.Minute,
			},
		},
		{
			name: "full jitter reaches zero",
			min:  500 * time.Millisecond, max: 2 * time.Minute, rand: lowest, steps: 3,
			want: []time.Duration{0, 0, 0},
		},
		{
			name: "reset after a connect starts again under 1s",
			min:  500 * time.Millisecond, max: 2 * time.Minute, rand: highest, steps: 5, resetAt: 3,
			want: []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 500 * time.Millisecond, time.Second},
		},
		{
			name: "min above max is capped",
			min:  time.Minute, max: 10 * time.Second, rand: highest, steps: 2,
			want: []time.Duration{10 * time.Second, 10 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &backoff{min: tt.min, max: tt.max, rand: tt.rand}
			var got []time.Duration
			for i := range tt.steps {
				if tt.resetAt != 0 && i == tt.resetAt {
					b.reset()
				}
				got = append(got, b.next())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("delays (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackoffRandArgument(t *testing.T) {
	// The random source is asked for [0, ceil], inclusive, at every step.
	var asked []int64
	b := &backoff{min: 500 * time.Millisecond, max: 3 * time.Second, rand: func(n int64) int64 {
		asked = append(asked, n)
		return 0
	}}
	for range 5 {
		b.next()
	}
	want := []int64{int64(500*time.Millisecond) + 1, int64(time.Second) + 1, int64(2*time.Second) + 1, int64(3*time.Second) + 1, int64(3*time.Second) + 1}
	if diff := cmp.Diff(want, asked); diff != "" {
		t.Errorf("rand arguments (-want +got):\n%s", diff)
	}
}

func TestBackoffLongRunNeverOverflows(t *testing.T) {
	b := &backoff{min: 500 * time.Millisecond, max: 2 * time.Minute, rand: rand.Int64N}
	for i := range 200 {
		d := b.next()
		if d < 0 || d > 2*time.Minute {
			t.Fatalf("step %d: %v outside [0, 2m]", i, d)
		}
		if i == 0 && d >= time.Second {
			t.Fatalf("first retry %v, want < 1s", d)
		}
	}
}
