package ota

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/iotagent/iotagent/internal/hostallow"
)

// ErrDownload marks a download that failed for good: the server refused
// it (a 4xx other than 408 and 429), or the retries ran out.
var ErrDownload = errors.New("ota: download failed")

// transientError is a download error worth retrying: a dropped
// connection, a timeout, a 5xx, 408 or 429.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// IsTransient reports whether err is worth retrying later.
func IsTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// download fetches r.URL into the part file, resuming from what is there.
// It retries transient failures with backoff; a retry that made progress
// past the most ever downloaded does not count against the limit, so the
// number of requests is bounded.
func (u *Updater) download(ctx context.Context, st *Status, r Release) error {
	fails := 0
	backoff := u.o.BackoffMin
	high := fileSize(u.l.downloadPath()) // the most ever held: progress is going past it
	for {
		err := u.fetchOnce(ctx, st, r)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !IsTransient(err) {
			return err
		}
		if n := fileSize(u.l.downloadPath()); n > high {
			high = n
			fails, backoff = 0, u.o.BackoffMin
		}
		fails++
		if fails > u.o.Retries {
			return fmt.Errorf("%w after %d attempts: %w", ErrDownload, fails, err)
		}
		u.o.Attempt(err)
		d := backoff/2 + rand.N(backoff/2+1) // jitter
		if err := u.o.Sleep(ctx, d); err != nil {
			return err
		}
		backoff = min(backoff*2, u.o.BackoffMax)
	}
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// fetchOnce makes one request and appends to the part file.
func (u *Updater) fetchOnce(ctx context.Context, st *Status, r Release) error {
	f, err := os.OpenFile(u.l.downloadPath(), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	defer f.Close()
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if off == r.Size {
		return nil // complete; Verify decides whether it is right
	}
	if off > r.Size {
		if err := truncate(f); err != nil {
			return err
		}
		off = 0
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDownload, err)
	}
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
		if st.ETag != "" {
			req.Header.Set("If-Range", st.ETag)
		}
	}
	resp, err := u.o.HTTPClient.Do(req)
	if errors.Is(err, hostallow.ErrNotAllowed) {
		return fmt.Errorf("%w: %w (ota.allowed_hosts)", ErrDownload, err)
	}
	if err != nil {
		return &transientError{fmt.Errorf("download: %w", err)}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if ok && total >= 0 && total != r.Size {
			return sizeMismatch(f, total, r.Size)
		}
		if !ok || start != off {
			// Not the part asked for: start again from zero.
			if err := truncate(f); err != nil {
				return err
			}
			return &transientError{fmt.Errorf("download: Content-Range %q does not start at %d", resp.Header.Get("Content-Range"), off)}
		}
	case resp.StatusCode == http.StatusOK:
		// The server ignored Range, or the object changed (If-Range).
		if resp.ContentLength >= 0 && resp.ContentLength != r.Size {
			return sizeMismatch(f, resp.ContentLength, r.Size)
		}
		if err := truncate(f); err != nil {
			return err
		}
		off = 0
		if et := resp.Header.Get("ETag"); et != st.ETag {
			st.ETag = et
			if err := u.l.save(st, u.o.Now()); err != nil {
				return err
			}
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// The object is shorter than what we have: start again.
		if err := truncate(f); err != nil {
			return err
		}
		return &transientError{fmt.Errorf("download: %s", resp.Status)}
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return &transientError{fmt.Errorf("download: %s", resp.Status)}
	default:
		return fmt.Errorf("%w: %s", ErrDownload, resp.Status)
	}
	// Never take more than the job announced.
	pw := &progressWriter{w: f, done: off, total: r.Size, fn: u.o.Progress}
	n, cerr := io.Copy(pw, io.LimitReader(resp.Body, r.Size-off+1))
	if serr := f.Sync(); serr != nil && cerr == nil {
		cerr = serr
	}
	if off+n > r.Size {
		_ = truncate(f)
		return fmt.Errorf("%w: the server sent more than %d bytes", ErrSizeMismatch, r.Size)
	}
	if cerr != nil {
		return &transientError{fmt.Errorf("download: after %d bytes: %w", off+n, cerr)}
	}
	if off+n < r.Size {
		return &transientError{fmt.Errorf("download: connection ended after %d of %d bytes", off+n, r.Size)}
	}
	return nil
}

// sizeMismatch ends a download whose object has another size than the
// job announced: no retry can fix that.
func sizeMismatch(f *os.File, got, want int64) error {
	if err := truncate(f); err != nil {
		return err
	}
	return fmt.Errorf("%w: the server has %d bytes, the job says %d", ErrSizeMismatch, got, want)
}

func truncate(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("download: truncate: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	return nil
}

// contentRange parses "bytes START-END/TOTAL"; total is -1 for "*".
func contentRange(s string) (start, total int64, ok bool) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, false
	}
	span, size, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, false
	}
	first, _, ok := strings.Cut(span, "-")
	if !ok {
		return 0, 0, false
	}
	from, err := strconv.ParseUint(first, 10, 63)
	if err != nil {
		return 0, 0, false
	}
	if size == "*" {
		return int64(from), -1, true
	}
	n, err := strconv.ParseUint(size, 10, 63)
	if err != nil {
		return 0, 0, false
	}
	return int64(from), int64(n), true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// progressWriter reports the bytes written so far after every write.
type progressWriter struct {
	w           io.Writer
	done, total int64
	fn          func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.fn(p.done, p.total)
	return n, err
}
