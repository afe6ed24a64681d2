package sim_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/sensors/sim"
)

// feed runs FeedFIFO in the background, returning the lines channel and a
// stop function that returns FeedFIFO's error.
func feed(t *testing.T, path string) (<-chan string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	lines := make(chan string, 16)
	done := make(chan error, 1)
	go func() { done <- sim.FeedFIFO(ctx, path, func(l string) { lines <- l }) }()
	return lines, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("FeedFIFO did not return after cancel")
			return nil
		}
	}
}

// mkfifo creates the pipe up front, so that writers can open it before
// FeedFIFO has (opening for writing blocks until a reader has it open).
func mkfifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFIFO(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, lines <-chan string, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %q, still waiting for %d lines", got, n-len(got))
		}
	}
	return got
}

func TestFeedFIFOCreatesPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "motion")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sim.FeedFIFO(ctx, path, func(string) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("FeedFIFO = %v, want context.Canceled", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("pipe not created (or removed): %v", err)
	}
	if fi.Mode().Type() != fs.ModeNamedPipe || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want named pipe 0600", fi.Mode())
	}
}

func TestFeedFIFOLinesAcrossWriters(t *testing.T) {
	path := mkfifo(t)
	lines, stop := feed(t, path)
	writeFIFO(t, path, "1\n0\n")
	writeFIFO(t, path, "  31.5 \n\n\r\nlid open\n") // a second writer after the first closed
	writeFIFO(t, path, "last\n")
	want := []string{"1", "0", "31.5", "lid open", "last"}
	if diff := cmp.Diff(want, recv(t, lines, len(want))); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("FeedFIFO returned %v, want context.Canceled", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("pipe removed: %v", err)
	}
	// Reusing an existing pipe works.
	lines, stop = feed(t, path)
	writeFIFO(t, path, "again\n")
	if diff := cmp.Diff([]string{"again"}, recv(t, lines, 1)); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("FeedFIFO returned %v, want context.Canceled", err)
	}
}

func TestFeedFIFOErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		fn   func(string)
	}{
		{"regular file", regular, func(string) {}},
		{"missing directory", filepath.Join(dir, "nope", "fifo"), func(string) {}},
		{"nil func", filepath.Join(dir, "fifo"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := sim.FeedFIFO(t.Context(), tt.path, tt.fn); err == nil || errors.Is(err, context.Canceled) {
				t.Errorf("FeedFIFO(%s) = %v, want an error", tt.path, err)
			}
		})
	}
}

func TestFeedFIFOLineTooLong(t *testing.T) {
	path := mkfifo(t)
	done := make(chan error, 1)
	go func() { done <- sim.FeedFIFO(t.Context(), path, func(string) {}) }()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// FeedFIFO stops reading part-way, so the write may fail with EPIPE.
	_, _ = f.Write(append(bytes.Repeat([]byte("x"), sim.MaxLineBytes+10), '\n'))
	select {
	case err := <-done:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("FeedFIFO = %v, want a line-too-long error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FeedFIFO did not stop on an overlong line")
	}
}
