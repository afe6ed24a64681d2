package main

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzReadDeb(f *testing.F) {
	f.Add([]byte("!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n"))
	f.Add([]byte("!<arch>\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := readDeb(data)
		if err == nil && (d.Package != "iotagent" || d.Version == "" || d.Architecture == "") {
			t.Fatalf("accepted %+v", d)
		}
	})
}

// FuzzFAT32Fix: fat32Fix on a damaged file system returns an error or
// fixes it; it never panics or loops.
func FuzzFAT32Fix(f *testing.F) {
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 512 || len(data) > 1<<20 {
			return
		}
		p := filepath.Join(t.TempDir(), "fs.img")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		x, err := readFAT32(fh, 0, int64(len(data)))
		if err != nil {
			return
		}
		_, _ = x.fix()
	})
}
