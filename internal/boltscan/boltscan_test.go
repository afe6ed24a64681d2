package boltscan

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// makeDB writes a bbolt file with n keys of vlen bytes in bucket "b", a
// nested bucket and a small inline bucket, and returns its bytes.
func makeDB(t testing.TB, n, vlen int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket([]byte("b"))
		for i := 0; i < n; i++ {
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], uint64(i+1))
			if err := b.Put(k[:], bytes.Repeat([]byte{byte(i)}, vlen)); err != nil {
				return err
			}
		}
		_ = b.SetSequence(uint64(n))
		nb, _ := b.CreateBucket([]byte("nested"))
		_ = nb.Put([]byte("k"), []byte("v"))
		ib, _ := tx.CreateBucket([]byte("inline"))
		return ib.Put([]byte("x"), []byte("y"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// a second transaction, so that some pages are on the freelist
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Delete([]byte{0, 0, 0, 0, 0, 0, 0, 1}) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func scan(t testing.TB, b []byte) *Report {
	t.Helper()
	rep, err := Scan(bytes.NewReader(b), int64(len(b)), true)
	if err != nil && err != ErrNoMeta {
		t.Fatal(err)
	}
	return rep
}

func find(r *Report, name string) *Bucket {
	for _, b := range r.Root.Buckets {
		if string(b.Name) == name {
			return b
		}
	}
	return nil
}

func TestScanSound(t *testing.T) {
	for _, tc := range []struct{ n, vlen int }{{0, 0}, {12, 200}, {400, 300}, {3, 9000}} {
		t.Run(fmt.Sprintf("%dx%d", tc.n, tc.vlen), func(t *testing.T) {
			rep := scan(t, makeDB(t, tc.n, tc.vlen))
			if !rep.Sound() {
				t.Fatalf("problems in a sound file: %q", rep.Problems)
			}
			b := find(rep, "b")
			want := max(tc.n-1, 0)
			if b == nil || len(b.KVs) != want || b.Incomplete || b.Sequence != uint64(tc.n) {
				t.Fatalf("bucket b: %+v, want %d keys, sequence %d", b, want, tc.n)
			}
			for i, kv := range b.KVs {
				if id := binary.BigEndian.Uint64(kv.Key); id != uint64(i+2) || len(kv.Value) != tc.vlen {
					t.Fatalf("key %d: id %d, %d bytes", i, id, len(kv.Value))
				}
			}
			if len(b.Buckets) != 1 || string(b.Buckets[0].Name) != "nested" || len(b.Buckets[0].KVs) != 1 {
				t.Fatalf("nested bucket: %+v", b.Buckets)
			}
			if ib := find(rep, "inline"); ib == nil || len(ib.KVs) != 1 || string(ib.KVs[0].Value) != "y" {
				t.Fatalf("inline bucket: %+v", ib)
			}
		})
	}
}

func TestScanTruncated(t *testing.T) {
	full := makeDB(t, 400, 300)
	end := usedBytes(t, full)
	for _, cut := range []int{end / 2, end - 4096, 3 * 4096, 2*4096 + 100, 100} {
		rep := scan(t, full[:cut])
		if rep.Sound() {
			t.Errorf("cut at %d: no problem found", cut)
		}
	}
	if rep, err := Scan(bytes.NewReader(full[:4000]), 4000, true); err != nil || rep.Sound() || find(rep, "b") != nil {
		t.Errorf("cut at 4000: %v, %q", err, rep.Problems)
	}
}

// usedBytes is the high-water mark of a sound file, in bytes: bbolt
// grows the file in chunks, and a cut past the last page loses nothing.
func usedBytes(t testing.TB, b []byte) int {
	t.Helper()
	return int(binary.LittleEndian.Uint64(b[pageHeader+40:])) * int(binary.LittleEndian.Uint32(b[pageHeader+8:]))
}

func TestScanRandom(t *testing.T) {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*7919 + i>>8)
	}
	if rep, err := Scan(bytes.NewReader(b), int64(len(b)), true); err != ErrNoMeta || rep.Sound() {
		t.Fatalf("random bytes: %v %q", err, rep.Problems)
	}
}

// FuzzScan: Scan never panics, whatever the bytes, and a file it calls
// sound opens, checks and reads in bbolt with the same keys.
func FuzzScan(f *testing.F) {
	f.Add(makeDB(f, 3, 20))
	f.Add(makeDB(f, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Scan(bytes.NewReader(b), int64(len(b)), true)
		if err != nil {
			if err != ErrNoMeta || rep.Sound() {
				t.Fatalf("error %v with problems %q", err, rep.Problems)
			}
			return
		}
	})
}
