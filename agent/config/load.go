package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// MaxFileSize is the largest config file Parse and Load accept.
const MaxFileSize = 1 << 20

// Parse builds a Config from the defaults and the JSON document data, decoded
// strictly. Relative paths in it are resolved against baseDir (normally the
// config file's directory), and defaults that depend on other fields are
// filled in. Parse does not validate: call Validate after applying flags.
//
// Every problem with a field is reported (joined); a syntax error is
// reported alone, since nothing after it can be trusted.
func Parse(data []byte, baseDir string) (Config, error) {
	return ParseWith(data, baseDir, nil)
}

// ParseWith is Parse with override applied after the file and before the
// defaults that depend on other fields, so that a state dir given on the
// command line also moves the paths that default to places under it.
// Paths that override sets should be absolute.
func ParseWith(data []byte, baseDir string, override func(*Config)) (Config, error) {
	if len(data) > MaxFileSize {
		return Config{}, &FieldError{
			Problem: fmt.Sprintf("%d bytes is over the %d KiB limit", len(data), MaxFileSize>>10),
			kind:    ErrTooLarge,
		}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 BOM some editors add
	c := Default()
	// These default to paths under state_dir, which the file may change.
	c.Identity.Cert, c.Identity.Key, c.LocalAPI.Socket = "", "", ""
	if err := decodeStrict(data, &c); err != nil {
		return Config{}, err
	}
	c.resolvePaths(baseDir)
	if override != nil {
		override(&c)
	}
	c.fillDerived()
	return c, nil
}

// Load reads the config file at path, parses it with relative paths resolved
// against the file's directory, and validates it. Callers that apply flags
// use ReadFile and Parse, then Validate, instead.
func Load(path string) (Config, error) {
	data, err := ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ReadFile reads a config file, refusing anything that is not a regular file
// or is over MaxFileSize (with an error wrapping ErrTooLarge).
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("read config: %s is a directory, want a JSON file", path)
	}
	if fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("read config %s: %d bytes: %w (limit %d KiB)", path, fi.Size(), ErrTooLarge, MaxFileSize>>10)
	}
	// Bound the read too: the file may grow, or be a pipe.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("read config %s: %w (limit %d KiB)", path, ErrTooLarge, MaxFileSize>>10)
	}
	return data, nil
}
