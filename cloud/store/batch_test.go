package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestBatch: concurrent callers each get their own outcome; a failing or
// panicking fn leaves nothing behind and the others of its batch are
// stored; a lone call commits.
func TestBatch(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "sim.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	if err := db.Batch(func(tx *Tx) error { return tx.Put("b", "lone", []byte("1")) }); err != nil {
		t.Fatalf("lone Batch: %v", err)
	}
	if v, err := db.Get("b", "lone"); err != nil || string(v) != "1" {
		t.Fatalf("lone Batch stored %q, %v", v, err)
	}

	boom := errors.New("boom")
	const n = 64
	errs := make([]error, n)
	runs := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Batch(func(tx *Tx) error {
				runs[i]++ // the fn of one caller never runs concurrently with itself
				key := fmt.Sprintf("k%02d", i)
				if err := tx.Put("b", key, []byte(key)); err != nil {
					return err
				}
				switch i % 16 {
				case 3:
					return fmt.Errorf("caller %d: %w", i, boom)
				case 7:
					panic("caller bug")
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		key := fmt.Sprintf("k%02d", i)
		_, gerr := db.Get("b", key)
		switch i % 16 {
		case 3:
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), fmt.Sprintf("caller %d:", i)) || !errors.Is(gerr, ErrNotFound) {
				t.Errorf("failing caller %d: err %v, stored %v; want its own error and nothing stored", i, err, gerr)
			}
		case 7:
			if err == nil || !strings.Contains(err.Error(), "panicked") || !errors.Is(gerr, ErrNotFound) {
				t.Errorf("panicking caller %d: err %v, stored %v; want an error and nothing stored", i, err, gerr)
			}
		default:
			if err != nil || gerr != nil {
				t.Errorf("caller %d: err %v, stored %v", i, err, gerr)
			}
		}
		if runs[i] == 0 {
			t.Errorf("caller %d: fn never ran", i)
		}
	}
}

// BenchmarkBatch is 32 writers at once, each waiting for its commit,
// through Update (one commit each) and Batch (group commit).
func BenchmarkBatch(b *testing.B) {
	for _, mode := range []string{"update", "batch"} {
		b.Run(mode, func(b *testing.B) {
			db, err := Open(filepath.Join(b.TempDir(), "sim.db"), 0)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			val := make([]byte, 2000)
			var mu sync.Mutex
			n := 0
			b.SetParallelism(16) // with -cpu 2: 32 writers
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					n++
					key := fmt.Sprint(n)
					mu.Unlock()
					put := func(tx *Tx) error { return tx.Put("b", key, val) }
					var err error
					if mode == "batch" {
						err = db.Batch(put)
					} else {
						err = db.Update(put)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
