package transport

import "time"

// backoff computes reconnect delays: exponential with full jitter. Attempt n
// (from 0) sleeps a uniformly random duration in [0, min(max, min·2^n)].
// It is not safe for concurrent use; Run owns one.
type backoff struct {
	min, max time.Duration
	rand     func(n int64) int64 // uniform in [0, n), like rand.Int64N
	attempt  int
}

// next returns the delay before the next attempt and advances.
func (b *backoff) next() time.Duration {
	ceil := b.max
	if b.attempt < 62 {
		if c := b.min << b.attempt; c > 0 && c < b.max && c>>b.attempt == b.min {
			ceil = c
		}
	}
	b.attempt++
	if ceil <= 0 {
		return 0
	}
	return time.Duration(b.rand(int64(ceil) + 1))
}

// reset starts again from the shortest delay, after a successful connect.
func (b *backoff) reset() { b.attempt = 0 }
