package logring

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRingKeepsNewest(t *testing.T) {
	tests := []struct {
		name      string
		size, put int
		ask       int
		want      []string
	}{
		{"empty", 3, 0, 0, []string{}},
		{"partial", 3, 2, 0, []string{"l0", "l1"}},
		{"exactly full", 3, 3, 0, []string{"l0", "l1", "l2"}},
		{"wrapped", 3, 5, 0, []string{"l2", "l3", "l4"}},
		{"last two of wrapped", 3, 7, 2, []string{"l5", "l6"}},
		{"ask more than held", 4, 2, 10, []string{"l0", "l1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(tt.size)
			for i := range tt.put {
				fmt.Fprintf(r, "l%d\n", i)
			}
			got, total := r.Lines(tt.ask)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Lines (-want +got):\n%s", diff)
			}
			if total != uint64(tt.put) {
				t.Errorf("total = %d, want %d", total, tt.put)
			}
		})
	}
}

func TestHandlerTeesAndFollowsLevel(t *testing.T) {
	r := New(10)
	var out bytes.Buffer
	level := new(slog.LevelVar)
	log := slog.New(r.Handler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: level}))).With("component", "x").WithGroup("g")
	log.Debug("hidden")
	log.Info("shown", "k", 1)
	level.Set(slog.LevelDebug)
	log.Debug("now shown")
	lines, _ := r.Lines(0)
	if len(lines) != 2 {
		t.Fatalf("ring has %d lines, want 2: %q", len(lines), lines)
	}
	for _, want := range []string{"msg=shown", "component=x", "g.k=1"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line %q lacks %q", lines[0], want)
		}
	}
	if !strings.Contains(out.String(), "msg=shown") || !strings.Contains(out.String(), `msg="now shown"`) {
		t.Errorf("next handler did not get the records: %s", out.String())
	}
}

func TestLongLineCut(t *testing.T) {
	r := New(1)
	r.Write([]byte(strings.Repeat("x", MaxLineBytes*2)))
	lines, _ := r.Lines(0)
	if len(lines[0]) > MaxLineBytes+16 {
		t.Errorf("stored %d bytes, want at most about %d", len(lines[0]), MaxLineBytes)
	}
}

func TestConcurrent(t *testing.T) {
	r := New(16)
	log := slog.New(r.Handler(slog.NewTextHandler(io.Discard, nil)))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 100 {
				log.Info("m", "i", i)
				r.Lines(5)
			}
		})
	}
	wg.Wait()
	if lines, total := r.Lines(0); total != 400 || len(lines) != 16 {
		t.Errorf("total = %d, %d lines; want 400, 16", total, len(lines))
	}
}

func BenchmarkHandle(b *testing.B) {
	r := New(500)
	log := slog.New(r.Handler(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	b.ReportAllocs()
	for b.Loop() {
		log.Info("telemetry queued", "topic", "telemetry/box-1", "bytes", 120)
	}
}
