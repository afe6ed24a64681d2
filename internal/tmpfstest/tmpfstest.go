// Package tmpfstest mounts a small, real tmpfs for tests of what the
// agent does when its disk is full, and fills it.
package tmpfstest

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new directory under t.TempDir()
// and unmounts it in t.Cleanup. It needs root: otherwise the test is
// skipped, or fails when CI=true (CI runs as root).
func Mount(t testing.TB, size int64) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("skipped: tmpfs is Linux only")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test mounts a tmpfs and needs root; CI runs as root")
		}
		t.Skip("skipped: mounting a tmpfs needs root (run the tests as root to include it)")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := mount(dir, size); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unmount(dir); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until the filesystem has no space left, and
// returns a func that removes it again.
func Fill(t testing.TB, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for _, n := range []int{len(buf), 512, 1} { // big steps, then the crumbs
		for {
			_, err := f.Write(buf[:n])
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("fill %s: %v", dir, err)
			}
		}
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Errorf("free %s: %v", dir, err)
		}
	}
}
