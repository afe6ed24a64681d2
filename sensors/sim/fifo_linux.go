package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"
)

// FeedFIFO calls fn for every line written to the named pipe at path until
// ctx ends, then returns ctx.Err(). It creates the pipe (mode 0600) if path
// does not exist, fails if path exists and is not a pipe, and removes
// nothing. The pipe is opened read-write, so it never reports end of file
// when writers come and go: `echo 1 > path` may be repeated at will.
//
// Lines are trimmed of surrounding white space and empty lines are skipped.
// fn runs on the caller's goroutine; a line longer than MaxLineBytes ends
// the feed with an error.
func FeedFIFO(ctx context.Context, path string, fn func(line string)) error {
	if fn == nil {
		return errors.New("feed fifo: nil func")
	}
	if err := ensureFIFO(path); err != nil {
		return err
	}
	// O_RDWR on a FIFO does not block on Linux and keeps a writer open, so
	// reads block instead of returning EOF between writers. os.OpenFile
	// puts pipes in the runtime poller, so the read deadline below works.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("feed fifo: open %s: %w", path, err)
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), MaxLineBytes)
	for sc.Scan() {
		if ctx.Err() != nil {
			break
		}
		if line := strings.TrimSpace(sc.Text()); line != "" {
			fn(line)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("feed fifo: read %s: %w", path, err)
	}
	return fmt.Errorf("feed fifo: read %s: unexpected end of file", path)
}

func ensureFIFO(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		err = syscall.Mkfifo(path, 0o600)
		if err == nil {
			// Mkfifo honours the umask; make the mode exactly 0600.
			if err := os.Chmod(path, 0o600); err != nil {
				return fmt.Errorf("feed fifo: chmod %s: %w", path, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("feed fifo: mkfifo %s: %w", path, err)
		}
		fi, err = os.Stat(path) // created meanwhile by someone else
	}
	if err != nil {
		return fmt.Errorf("feed fifo: stat %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeNamedPipe {
		return fmt.Errorf("feed fifo: %s exists and is not a named pipe (mode %s)", path, fi.Mode())
	}
	return nil
}
