package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/iotagent/iotagent/internal/hostallow"
)

// DownloadOptions configure the "download-file" handler.
type DownloadOptions struct {
	Dirs         []string // absolute directories files may be written into (and below)
	AllowedHosts []string // URL hosts allowed; empty: any
	MaxBytes     int64    // default 64 MiB
	HTTPClient   *http.Client
}

// downloadDoc is the "download-file" job document:
//
//	{"operation":"download-file","url":"https://…","path":"/var/lib/iotagent/files/a.bin","sha256":"…"}
type downloadDoc struct {
	URL    string `json:"url"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// DownloadFile returns the "download-file" handler: it fetches url into
// path, which must lie inside one of o.Dirs once every symlink is
// resolved, checks the optional sha256 and renames the file into place.
func DownloadFile(o DownloadOptions) Handler {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	// Every redirect is checked against the list too.
	o.HTTPClient = hostallow.Client(o.HTTPClient, o.AllowedHosts)
	return HandlerFunc(func(ctx context.Context, job Job, p *Progress) (map[string]string, error) {
		var d downloadDoc
		if err := json.Unmarshal(job.Document, &d); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrReject, err)
		}
		if err := hostallow.Check(d.URL, o.AllowedHosts); err != nil {
			return nil, fmt.Errorf("%w: url: %v", ErrReject, err)
		}
		var want []byte
		if d.SHA256 != "" {
			b, err := hex.DecodeString(d.SHA256)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("%w: sha256 is not 64 hex digits", ErrReject)
			}
			want = b
		}
		dst, err := safePath(d.Path, o.Dirs)
		if err != nil {
			return nil, fmt.Errorf("%w: path: %v", ErrReject, err)
		}
		if err := p.Update(ctx, map[string]string{"step": "downloading", "path": d.Path}); err != nil {
			return nil, err
		}
		n, err := fetchTo(ctx, o, d.URL, dst, want)
		if err != nil {
			return nil, err
		}
		return map[string]string{"path": d.Path, "bytes": fmt.Sprint(n)}, nil
	})
}

// within reports whether p is dir or below it (both clean and absolute).
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// safePath checks that p is a file path inside one of dirs, with no ".."
// and no symlink leading out, and returns it with its directory's
// symlinks resolved.
func safePath(p string, dirs []string) (string, error) {
	if p == "" || !filepath.IsAbs(p) {
		return "", errors.New("must be an absolute path")
	}
	if strings.ContainsRune(p, 0) {
		return "", errors.New("contains NUL")
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", errors.New(`".." is not allowed`)
		}
	}
	p = filepath.Clean(p)
	base := filepath.Base(p)
	if base == "." || base == "/" || strings.HasPrefix(base, ".") && strings.Contains(base, ".tmp-") {
		return "", errors.New("not a file name")
	}
	for _, d := range dirs {
		d = filepath.Clean(d)
		if !within(d, p) || p == d {
			continue
		}
		realDir, err := filepath.EvalSymlinks(d)
		if err != nil {
			return "", fmt.Errorf("download directory %s: %w", d, err)
		}
		realParent, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return "", fmt.Errorf("directory: %w", err)
		}
		if !within(realDir, realParent) {
			return "", fmt.Errorf("%s leads out of %s through a symlink", filepath.Dir(p), d)
		}
		dst := filepath.Join(realParent, base)
		if fi, err := os.Lstat(dst); err == nil && !fi.Mode().IsRegular() {
			return "", fmt.Errorf("%s exists and is not a regular file", p)
		}
		return dst, nil
	}
	return "", fmt.Errorf("%s is not inside a configured download directory", p)
}

// fetchTo downloads url into a temporary file next to dst, verifies it
// and renames it into place.
func fetchTo(ctx context.Context, o DownloadOptions, u, dst string, want []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	resp, err := o.HTTPClient.Do(req)
	if errors.Is(err, hostallow.ErrNotAllowed) {
		return 0, fmt.Errorf("download: %w (jobs.download_hosts)", err)
	}
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("download: %s", resp.Status)
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename it is gone already
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, o.MaxBytes+1))
	if err == nil && n > o.MaxBytes {
		err = fmt.Errorf("larger than %d bytes", o.MaxBytes)
	}
	if err == nil && want != nil && !bytes.Equal(h.Sum(nil), want) {
		err = fmt.Errorf("sha256 mismatch: got %x", h.Sum(nil))
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	return n, nil
}
