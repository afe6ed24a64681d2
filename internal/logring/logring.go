// Package logring keeps the last lines an slog.Logger wrote in memory, so
// that a technician can read them through the agent's local API without
// journal access. Ring.Handler tees records to another handler and to the
// ring, formatted as slog's text handler formats them.
package logring

import (
	"context"
	"log/slog"
	"sync"
)

// DefaultLines is how many lines New keeps when asked for 0.
const DefaultLines = 500

// MaxLineBytes bounds one stored line; longer ones are cut and marked.
const MaxLineBytes = 4096

// Ring is a fixed-size buffer of log lines, safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	lines []string
	next  int // index the next line goes to
	full  bool
	total uint64
}

// New returns a ring of n lines (DefaultLines when n <= 0).
func New(n int) *Ring {
	if n <= 0 {
		n = DefaultLines
	}
	return &Ring{lines: make([]string, n)}
}

// Write stores p as one line (the text handler writes one record per
// call); a trailing newline is dropped. It never fails.
func (r *Ring) Write(p []byte) (int, error) {
	n := len(p)
	if n > 0 && p[n-1] == '\n' {
		p = p[:n-1]
	}
	s := string(p)
	if len(s) > MaxLineBytes {
		s = s[:MaxLineBytes] + "…(cut)"
	}
	r.mu.Lock()
	r.lines[r.next] = s
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
	r.total++
	r.mu.Unlock()
	return n, nil
}

// Size is how many lines the ring keeps.
func (r *Ring) Size() int { return len(r.lines) }

// Lines returns up to n of the newest lines, oldest first (all when n <= 0),
// and how many lines were ever written.
func (r *Ring) Lines(n int) (lines []string, total uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	have := r.next
	if r.full {
		have = len(r.lines)
	}
	if n <= 0 || n > have {
		n = have
	}
	out := make([]string, 0, n)
	for i := have - n; i < have; i++ {
		idx := i
		if r.full {
			idx = (r.next + i) % len(r.lines)
		}
		out = append(out, r.lines[idx])
	}
	return out, r.total
}

// Handler returns a handler that passes every record to next and also
// stores it in the ring. It is enabled where next is, so a LevelVar
// behind next governs both.
func (r *Ring) Handler(next slog.Handler) slog.Handler {
	return &tee{next: next, ring: slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug})}
}

type tee struct {
	next, ring slog.Handler
}

func (t *tee) Enabled(ctx context.Context, l slog.Level) bool { return t.next.Enabled(ctx, l) }

func (t *tee) Handle(ctx context.Context, rec slog.Record) error {
	_ = t.ring.Handle(ctx, rec.Clone()) // the ring cannot fail
	return t.next.Handle(ctx, rec)
}

func (t *tee) WithAttrs(as []slog.Attr) slog.Handler {
	return &tee{next: t.next.WithAttrs(as), ring: t.ring.WithAttrs(as)}
}

func (t *tee) WithGroup(name string) slog.Handler {
	return &tee{next: t.next.WithGroup(name), ring: t.ring.WithGroup(name)}
}
