package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// testHookBeforeCommit, when non-nil, runs after the temporary file is
// complete and before it is renamed or linked into place. Tests use it to
// simulate a failure (or a crash) at the last moment. Nil in production.
var testHookBeforeCommit func(tmp string) error

// WriteFile writes data to path atomically with permissions perm, replacing
// any existing regular file. On error the old file, if any, is left as it
// was and no temporary file is left behind.
//
// If path is a symbolic link, the link itself is replaced by a regular file.
// An existing directory or other non-regular file at path is an error.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("write %s: exists and is not a regular file", path)
	}
	return write(path, data, perm, func(tmp string) error {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("rename into place: %w", err)
		}
		return nil
	})
}

// WriteNew is WriteFile for a file that must not exist yet: it fails with an
// error wrapping fs.ErrExist if path exists (checked atomically by linking
// the finished temporary file to path), so it never replaces a file, even
// when two writers race.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("write %s: %w", path, fs.ErrExist)
	}
	return write(path, data, perm, func(tmp string) error {
		if err := os.Link(tmp, path); err != nil {
			return fmt.Errorf("link into place: %w", err)
		}
		if err := os.Remove(tmp); err != nil {
			return fmt.Errorf("remove temporary file: %w", err)
		}
		return nil
	})
}

func write(path string, data []byte, perm os.FileMode, commit func(tmp string) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: create temporary file: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // may already be closed; the write error matters more
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: chmod: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if testHookBeforeCommit != nil {
		if err := testHookBeforeCommit(tmp); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := commit(tmp); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		// The new contents are in place; only their durability is unknown.
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// syncDir flushes a directory so that a rename or link in it is durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for syncing there
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	return err
}
