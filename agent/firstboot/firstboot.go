// Package firstboot adopts a configuration dropped on the Raspberry Pi's
// boot partition (/boot/firmware/iotagent/: config.json and the files it
// names, such as the claim certificate and key) into the agent's state
// dir, so that a freshly flashed card provisions itself on its first start.
//
// The boot partition is FAT: anyone can read it and file modes mean
// nothing there. Adopt therefore copies the files into a private
// directory, gives them mode 0600 and the agent's owner, checks that the
// configuration validates and the claim key is usable there, and only then
// removes them from the boot partition. A failure leaves the boot files
// where they were and records why in STATE/firstboot-error.json, which the
// agent reports in its status. It runs privileged, as the unit's
// ExecStartPre=+ step, before the unprivileged agent starts.
package firstboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/internal/atomicfile"
	"github.com/iotagent/iotagent/internal/statefile"
	"github.com/iotagent/iotagent/tpm"
)

const (
	// DefaultBootDir is where Raspberry Pi OS mounts the boot partition.
	DefaultBootDir = "/boot/firmware/iotagent"
	// Dir is the adopted files' directory under the state dir.
	Dir = "firstboot"
	// ErrorFile records the last failed adoption under the state dir.
	ErrorFile   = "firstboot-error.json"
	maxFileSize = 1 << 20
	maxFiles    = 32
)

// Problem is a failed adoption, as recorded in ErrorFile.
type Problem struct {
	BootDir string    `json:"boot_dir"`
	Error   string    `json:"error"`
	Time    time.Time `json:"time"`
}

// ConfigPath is the adopted config file in stateDir, or "" if there is none.
func ConfigPath(stateDir string) string {
	p := filepath.Join(stateDir, Dir, "config.json")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// LastProblem is the recorded failed adoption in stateDir, if any. A
// record that cannot be read is moved aside and recorded
// (internal/statefile) rather than ignored.
func LastProblem(stateDir string) (Problem, bool) {
	var p Problem
	found, _, err := statefile.ReadJSON(stateDir, filepath.Join(stateDir, ErrorFile), &p, nil,
		statefile.Then("the record of a failed first-boot adoption is lost; the boot partition's files are still there and are tried again at the next boot"))
	if err != nil || !found {
		return Problem{}, false
	}
	return p, true
}

// Adopt moves bootDir's files into stateDir/firstboot, owned by uid:gid
// (-1 keeps the current owner). It returns the adopted config path, or ""
// with a nil error when bootDir holds nothing to adopt.
func Adopt(bootDir, stateDir string, uid, gid int) (string, error) {
	entries, err := os.ReadDir(bootDir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0) {
		return "", nil
	}
	path, err := adopt(bootDir, stateDir, entries, err, uid, gid)
	if err != nil {
		b, _ := json.MarshalIndent(Problem{BootDir: bootDir, Error: err.Error(), Time: time.Now().UTC()}, "", "  ")
		if werr := atomicfile.WriteFile(filepath.Join(stateDir, ErrorFile), b, 0o644); werr != nil {
			err = errors.Join(err, werr)
		}
		return "", err
	}
	_ = os.Remove(filepath.Join(stateDir, ErrorFile))
	return path, nil
}

func adopt(bootDir, stateDir string, entries []os.DirEntry, readErr error, uid, gid int) (string, error) {
	if readErr != nil {
		return "", fmt.Errorf("read %s: %w", bootDir, readErr)
	}
	if len(entries) > maxFiles {
		return "", fmt.Errorf("%s holds %d entries; at most %d files are adopted", bootDir, len(entries), maxFiles)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(stateDir, ".firstboot-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // gone after the rename below on success
	var names []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return "", fmt.Errorf("%s: %s is not a regular file", bootDir, e.Name())
		}
		if err := copyPrivate(filepath.Join(bootDir, e.Name()), filepath.Join(tmp, e.Name()), uid, gid); err != nil {
			return "", err
		}
		names = append(names, e.Name())
	}
	// Check the copy, where modes are right: the config validates and the
	// claim key is a usable private key.
	cfgPath := filepath.Join(tmp, "config.json")
	data, err := config.ReadFile(cfgPath)
	if err != nil {
		return "", fmt.Errorf("%s has no usable config.json: %w", bootDir, err)
	}
	cfg, err := config.Parse(data, tmp)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return "", fmt.Errorf("%s/config.json:\n%w", bootDir, err)
	}
	if cfg.Provisioning.Enabled() {
		if _, err := tpm.NewFileStore(cfg.Provisioning.ClaimKey).Signer(); err != nil {
			return "", fmt.Errorf("claim key from %s: %w", bootDir, err)
		}
	}
	if err := os.Chown(tmp, uid, gid); err != nil {
		return "", err
	}
	final := filepath.Join(stateDir, Dir)
	if err := os.RemoveAll(final); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	if err := syncDir(stateDir); err != nil {
		return "", err
	}
	// Adopted for good: the secrets leave the world-readable partition.
	var rmErr error
	for _, n := range names {
		rmErr = errors.Join(rmErr, os.Remove(filepath.Join(bootDir, n)))
	}
	_ = os.Remove(bootDir)
	if rmErr != nil {
		return "", fmt.Errorf("adopted into %s, but could not remove the boot copies: %w", final, rmErr)
	}
	return filepath.Join(final, "config.json"), nil
}

func copyPrivate(src, dst string, uid, gid int) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	data, err := io.ReadAll(io.LimitReader(in, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	if len(data) > maxFileSize {
		return fmt.Errorf("%s is over %d KiB", src, maxFileSize>>10)
	}
	if err := atomicfile.WriteFile(dst, data, 0o600); err != nil {
		return err
	}
	return os.Chown(dst, uid, gid)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
