package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/iotagent/iotagent/internal/atomicfile"
	"github.com/iotagent/iotagent/internal/mbr"
)

// bootFS is the boot partition being prepared: a mounted directory
// (--boot-dir) or the FAT file system inside an image or on a card. Names
// are slash-separated and relative to the partition's root.
type bootFS interface {
	// ReadFile returns fs.ErrNotExist (wrapped) for a missing file.
	ReadFile(name string) ([]byte, error)
	// WriteFile creates or replaces name.
	WriteFile(name string, data []byte) error
	Remove(name string) error
	// List returns the names of the files in dir (not its
	// subdirectories); fs.ErrNotExist when dir does not exist.
	List(dir string) ([]string, error)
	Mkdir(dir string) error
	Close() error
}

// dirFS is a boot partition mounted at root.
type dirFS struct{ root string }

func (d dirFS) p(name string) string { return filepath.Join(d.root, filepath.FromSlash(name)) }

func (d dirFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(d.p(name)) }
func (d dirFS) WriteFile(name string, data []byte) error {
	return atomicfile.WriteFile(d.p(name), data, 0o644)
}
func (d dirFS) Remove(name string) error { return os.Remove(d.p(name)) }
func (d dirFS) Mkdir(dir string) error   { return os.MkdirAll(d.p(dir), 0o755) }
func (d dirFS) Close() error             { return nil }
func (d dirFS) List(dir string) ([]string, error) {
	es, err := os.ReadDir(d.p(dir))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range es {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// fatFS is a FAT file system read and written by go-diskfs, in a file
// (an image, or a card's block device) at an offset.
type fatFS struct {
	fs    filesystem.FileSystem
	f     *os.File
	start int64
	size  int64
	label string
	// written: go-diskfs changed something (fat32Fix then runs).
	written bool
	// fixes are what fat32Fix corrected after go-diskfs's writes.
	fixes []string
}

// openFAT opens the FAT file system of part in f.
func openFAT(f *os.File, name string, part mbr.Partition) (*fatFS, error) {
	bs := make([]byte, mbr.SectorSize)
	if _, err := f.ReadAt(bs, int64(part.Start)); err != nil {
		return nil, fmt.Errorf("%s: read the boot sector of %s: %w", name, part, err)
	}
	if bs[510] != 0x55 || bs[511] != 0xaa || binary.LittleEndian.Uint16(bs[11:]) != mbr.SectorSize {
		return nil, fmt.Errorf("%s: %s is typed FAT but holds no FAT file system with 512-byte sectors (not formatted?): %w", name, part, mbr.ErrNoFAT)
	}
	// FAT32 has no fixed root directory: its root entry count is 0.
	if binary.LittleEndian.Uint16(bs[17:]) != 0 || binary.LittleEndian.Uint16(bs[22:]) != 0 {
		return nil, fmt.Errorf("%s: %s holds FAT12 or FAT16; Raspberry Pi OS's boot partition is FAT32: %w", name, part, mbr.ErrNoFAT)
	}
	// Check the structure before go-diskfs reads it.
	if _, err := readFAT32(f, int64(part.Start), int64(part.Size)); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, part, err)
	}
	fsys, err := fat32.Read(file.New(f, false), int64(part.Size), int64(part.Start), mbr.SectorSize)
	if err != nil {
		return nil, fmt.Errorf("%s: read the FAT file system of %s: %w", name, part, err)
	}
	return &fatFS{fs: fsys, f: f, start: int64(part.Start), size: int64(part.Size), label: strings.TrimSpace(fsys.Label())}, nil
}

// find returns the name of the entry in dir matching base (FAT names are
// case-insensitive), whether it is a directory, and fs.ErrNotExist.
func (x *fatFS) find(dir, base string) (string, bool, error) {
	es, err := x.fs.ReadDir(fatDir(dir))
	if err != nil {
		if dir != "" && dir != "." {
			if _, _, perr := x.find(path.Dir(dir), path.Base(dir)); errors.Is(perr, fs.ErrNotExist) {
				return "", false, perr
			}
		}
		return "", false, fmt.Errorf("read directory /%s: %w", dir, err)
	}
	for _, e := range es {
		if strings.EqualFold(e.Name(), base) {
			return e.Name(), e.IsDir(), nil
		}
	}
	return "", false, fmt.Errorf("/%s: %w", path.Join(dir, base), fs.ErrNotExist)
}

// fatDir is dir as go-diskfs's ReadDir takes it (io/fs paths).
func fatDir(dir string) string {
	if dir == "" || dir == "/" {
		return "."
	}
	return dir
}

func (x *fatFS) ReadFile(name string) ([]byte, error) {
	if _, isDir, err := x.find(path.Dir(name), path.Base(name)); err != nil {
		return nil, err
	} else if isDir {
		return nil, fmt.Errorf("/%s is a directory, want a file", name)
	}
	f, err := x.fs.OpenFile("/"+name, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("open /%s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read /%s: %w", name, err)
	}
	// One Read of exactly the file's size from its start: go-diskfs
	// v1.9.4 reads past the end of a file when a Read starts inside a
	// cluster (as io.ReadAll's second call does with clusters over 512
	// bytes).
	data := make([]byte, fi.Size())
	n, err := f.Read(data)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read /%s: %w", name, err)
	}
	if int64(n) != fi.Size() {
		return nil, fmt.Errorf("read /%s: %d of %d bytes", name, n, fi.Size())
	}
	return data, nil
}

// WriteFile removes an existing name first, so that a shorter file
// leaves no clusters of the longer one behind.
func (x *fatFS) WriteFile(name string, data []byte) error {
	x.written = true
	if err := x.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := x.fs.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("create /%s: %w", name, err)
	}
	// One Write of the whole file from its start (see ReadFile).
	if n, err := f.Write(data); err != nil || n != len(data) {
		if err == nil {
			err = io.ErrShortWrite
		}
		f.Close()
		return fmt.Errorf("write /%s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write /%s: %w", name, err)
	}
	return nil
}

func (x *fatFS) Remove(name string) error {
	x.written = true
	real, _, err := x.find(path.Dir(name), path.Base(name))
	if err != nil {
		return err
	}
	if err := x.fs.Remove(path.Join(path.Dir(name), real)); err != nil {
		return fmt.Errorf("remove /%s: %w", name, err)
	}
	return nil
}

func (x *fatFS) Mkdir(dir string) error {
	x.written = true
	if err := x.fs.Mkdir("/" + dir); err != nil {
		return fmt.Errorf("make directory /%s: %w", dir, err)
	}
	return nil
}

func (x *fatFS) List(dir string) ([]string, error) {
	if _, isDir, err := x.find(path.Dir(dir), path.Base(dir)); err != nil {
		return nil, err
	} else if !isDir {
		return nil, fmt.Errorf("/%s is a file, want a directory", dir)
	}
	es, err := x.fs.ReadDir(fatDir(dir))
	if err != nil {
		return nil, fmt.Errorf("read directory /%s: %w", dir, err)
	}
	var names []string
	for _, e := range es {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Close corrects go-diskfs's slips (fat32Fix) and flushes the image or
// card to stable storage.
func (x *fatFS) Close() error {
	var ferr error
	if x.written {
		if fx, err := readFAT32(x.f, x.start, x.size); err != nil {
			ferr = err
		} else {
			x.fixes, ferr = fx.fix()
		}
	}
	if ferr != nil {
		ferr = fmt.Errorf("check the FAT after writing: %w", ferr)
	}
	serr := x.f.Sync()
	cerr := x.f.Close()
	if err := errors.Join(ferr, serr, cerr); err != nil {
		return fmt.Errorf("write %s: %w", x.f.Name(), err)
	}
	return nil
}
