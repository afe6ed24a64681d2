package store

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestView: a View reads what was committed, gives copies, and cannot
// write.
func TestView(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "sim.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Put("b", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	var missing, missingBucket, put, del error
	err = db.View(func(tx *Tx) error {
		var err error
		if got, err = tx.Get("b", "k"); err != nil {
			return err
		}
		_, missing = tx.Get("b", "nope")
		_, missingBucket = tx.Get("nope", "k")
		put = tx.Put("b", "k", []byte("w"))
		del = tx.Delete("b", "k")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]byte("v"), got); diff != "" {
		t.Errorf("Get in View (-want +got):\n%s", diff)
	}
	if !errors.Is(missing, ErrNotFound) || !errors.Is(missingBucket, ErrNotFound) {
		t.Errorf("missing key, bucket: %v, %v, want ErrNotFound", missing, missingBucket)
	}
	if put == nil || del == nil {
		t.Errorf("Put, Delete in View: %v, %v, want errors", put, del)
	}
	if v, err := db.Get("b", "k"); err != nil || string(v) != "v" {
		t.Errorf("after View: %q, %v, want v", v, err)
	}
	boom := errors.New("boom")
	if err := db.View(func(*Tx) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("View: %v, want fn's error", err)
	}
}
