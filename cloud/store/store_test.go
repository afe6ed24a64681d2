package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestRoundTripAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sim.db")
	db, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get("things", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on empty db: %v, want ErrNotFound", err)
	}
	for _, k := range []string{"a/1", "a/2", "b/1"} {
		if err := db.Put("things", k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Delete("things", "a/2"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys []string
	if err := db.ForEach("things", "a/", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "a/1" {
		t.Fatalf("after reopen, keys under a/ = %v, want [a/1]", keys)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sim.db")
	db, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(path, 50*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}
