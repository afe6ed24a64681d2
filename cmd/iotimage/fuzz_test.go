package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParseMBR(f *testing.F) {
	sec := make([]byte, 512)
	sec[510], sec[511] = 0x55, 0xaa
	copy(sec[446:], []byte{0x80, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0x08, 0})
	f.Add(sec)
	gpt := bytes.Clone(sec)
	gpt[446+4] = 0xee
	f.Add(gpt)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		parts, err := parseMBR(data)
		if err != nil {
			return
		}
		if len(parts) == 0 || len(parts) > 4 {
			t.Fatalf("%d partitions", len(parts))
		}
		for _, p := range parts {
			if p.Index < 1 || p.Index > 4 || p.Type == 0 || p.Size == 0 {
				t.Fatalf("bad partition %+v", p)
			}
		}
		_, _, _ = bootPartition(bytes.NewReader(data), int64(len(data)))
	})
}

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
