package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// dirEntries lists the names in dir, to check that no temporary file is left.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name string
		old  []byte // nil: no file before
		data []byte
		perm os.FileMode
	}{
		{"new file", nil, []byte("hello"), 0o600},
		{"replace", []byte("old contents that are longer"), []byte("new"), 0o644},
		{"empty", []byte("old"), []byte{}, 0o640},
		{"tightens mode", []byte("old"), []byte("secret"), 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tt.old != nil {
				if err := os.WriteFile(path, tt.old, 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, tt.data, tt.perm); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(tt.data), string(got)); diff != "" {
				t.Errorf("contents (-want +got):\n%s", diff)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.perm {
				t.Errorf("mode = %v, want %v", fi.Mode().Perm(), tt.perm)
			}
			if diff := cmp.Diff([]string{"f"}, dirEntries(t, dir)); diff != "" {
				t.Errorf("directory (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteFileRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := WriteFile("rel", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "rel"))
	if err != nil || string(got) != "x" {
		t.Fatalf("ReadFile = %q, %v; want \"x\"", got, err)
	}
}

// A failure at the last moment (the same point a power cut would hit) leaves
// the old file intact and removes the temporary file.
func TestFailureKeepsOldFile(t *testing.T) {
	for _, fn := range []struct {
		name  string
		write func(string, []byte, os.FileMode) error
	}{{"WriteFile", WriteFile}, {"WriteNew", WriteNew}} {
		t.Run(fn.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if fn.name == "WriteFile" {
				if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			boom := errors.New("boom")
			var sawTmp string
			testHookBeforeCommit = func(tmp string) error {
				sawTmp = tmp
				b, err := os.ReadFile(tmp)
				if err != nil || string(b) != "new" {
					return fmt.Errorf("temporary file holds %q, %v; want \"new\"", b, err)
				}
				return boom
			}
			t.Cleanup(func() { testHookBeforeCommit = nil })

			err := fn.write(path, []byte("new"), 0o600)
			if !errors.Is(err, boom) {
				t.Fatalf("error = %v, want boom", err)
			}
			if filepath.Dir(sawTmp) != dir {
				t.Errorf("temporary file %s is not in %s", sawTmp, dir)
			}
			var want []string
			if fn.name == "WriteFile" {
				got, err := os.ReadFile(path)
				if err != nil || string(got) != "old" {
					t.Errorf("after failure: %q, %v; want \"old\"", got, err)
				}
				want = []string{"f"}
			}
			if diff := cmp.Diff(want, dirEntries(t, dir)); diff != "" {
				t.Errorf("directory (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteFileErrors(t *testing.T) {
	t.Run("target is a directory", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "d")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(path, []byte("x"), 0o600); err == nil {
			t.Fatal("WriteFile over a directory succeeded")
		}
		if diff := cmp.Diff([]string{"d"}, dirEntries(t, dir)); diff != "" {
			t.Errorf("directory (-want +got):\n%s", diff)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope", "f")
		if err := WriteFile(path, []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error = %v, want fs.ErrNotExist", err)
		}
	})
}

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := WriteNew(path, []byte("first"), 0o600); err != nil {
		t.Fatalf("first WriteNew: %v", err)
	}
	if err := WriteNew(path, []byte("second"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteNew: %v, want fs.ErrExist", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "first" {
		t.Fatalf("contents %q, %v; want \"first\"", got, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	if diff := cmp.Diff([]string{"key"}, dirEntries(t, dir)); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
}

// The race WriteNew exists for: the file appears after the existence check
// but before the link. The link must fail rather than replace it.
func TestWriteNewRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	testHookBeforeCommit = func(string) error { return os.WriteFile(path, []byte("winner"), 0o600) }
	t.Cleanup(func() { testHookBeforeCommit = nil })
	if err := WriteNew(path, []byte("loser"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteNew: %v, want fs.ErrExist", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "winner" {
		t.Fatalf("contents %q, %v; want \"winner\"", got, err)
	}
	if diff := cmp.Diff([]string{"key"}, dirEntries(t, dir)); diff != "" {
		t.Errorf("directory (-want +got):\n%s", diff)
	}
}

func ExampleWriteFile() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "state.json")
	if err := WriteFile(path, []byte(`{"slot":"b"}`), 0o600); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(path)
	fmt.Println(string(b))
	// Output: {"slot":"b"}
}
