package ota

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Init creates STATE/ota with binary installed in slot a as the committed
// version, unless it exists already (then it only repairs the symlinks).
// The package's install script runs it once; it is idempotent.
//
// An unreadable state.json is recovered as PreStart does (from the
// committed link or a slot holding a usable binary), so that the
// committed link PreStart runs through exists again; when no slot is
// usable, Init starts over from binary. The bad file is kept as
// state.json.corrupt-TIMESTAMP and recorded in the state journal either
// way.
func Init(stateDir, binary, version string) error {
	l := NewLayout(stateDir)
	if st, err := l.load(); err == nil {
		return l.repairWith(&st)
	} else if !errors.Is(err, ErrNotInitialized) {
		if _, rerr := l.recoverState(err, time.Now()); rerr == nil {
			return nil
		}
		if _, rerr := l.moveAside(err, "no slot holds a usable binary: OTA initialised again from "+binary, time.Now()); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	for _, s := range Slots {
		if err := os.MkdirAll(l.slotDir(s), 0o755); err != nil {
			return fmt.Errorf("ota init: %w", err)
		}
	}
	if err := copyFileSync(binary, l.SlotBinary("a"), 0o755); err != nil {
		return fmt.Errorf("ota init: %w", err)
	}
	st := Status{State: Idle, Active: "a", ActiveVersion: version, MaxStarts: DefaultMaxStarts}
	if err := l.save(&st, time.Now()); err != nil {
		return fmt.Errorf("ota init: %w", err)
	}
	return l.repair()
}

// Upgrade installs binary as the committed version when the package that
// ships it is upgraded (postinst): like Init when STATE/ota is missing;
// otherwise, when no update is in progress and the committed slot holds
// another version, it replaces that slot's binary (a rename: a running
// agent keeps its own) and records version. During an update it changes
// nothing and returns ErrBusy.
func Upgrade(stateDir, binary, version string) error {
	l := NewLayout(stateDir)
	st, err := l.load()
	if err != nil {
		// Not there, or unreadable (Init recovers it): Init, then upgrade
		// the slot it committed when it holds another version.
		if err := Init(stateDir, binary, version); err != nil {
			return err
		}
		if st, err = l.load(); err != nil {
			return err
		}
	}
	switch {
	case !st.State.Terminal():
		return fmt.Errorf("%w (state %s): %s is not installed; run this again when it ends", ErrBusy, st.State, version)
	case st.ActiveVersion == version:
		return l.repairWith(&st)
	}
	if err := CheckBinary(binary); err != nil {
		return fmt.Errorf("ota upgrade: %w", err)
	}
	if err := copyFileSync(binary, l.SlotBinary(st.Active), 0o755); err != nil {
		return fmt.Errorf("ota upgrade: %w", err)
	}
	st.ActiveVersion = version
	if err := l.save(&st, time.Now()); err != nil {
		return err
	}
	return l.repairWith(&st)
}

// copyFileSync copies src to dst (via a temporary file and a rename) and
// fsyncs the file and dst's directory.
func copyFileSync(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// pointTo makes link a symlink to slots/slot with one atomic rename (a
// new link under a temporary name replaces the old one), then fsyncs the
// directory. It does nothing when the link is already right.
func (l Layout) pointTo(link, slot string) error {
	target := filepath.Join("slots", slot)
	if got, err := os.Readlink(link); err == nil && got == target {
		return nil
	}
	tmp := link + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("point %s: %w", filepath.Base(link), err)
	}
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("point %s: %w", filepath.Base(link), err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return fmt.Errorf("point %s: %w", filepath.Base(link), err)
	}
	return syncDir(l.Dir)
}

// linkSlot returns the slot a symlink points to, or "" if it is missing
// or points elsewhere.
func linkSlot(link string) string {
	got, err := os.Readlink(link)
	if err != nil {
		return ""
	}
	switch got {
	case filepath.Join("slots", "a"):
		return "a"
	case filepath.Join("slots", "b"):
		return "b"
	}
	return ""
}

// repair makes both symlinks agree with state.json: committed -> Active;
// current -> Slot while a trial is recorded (Confirm), else -> Active.
func (l Layout) repair() error {
	st, err := l.load()
	if err != nil {
		return err
	}
	return l.repairWith(&st)
}

func (l Layout) repairWith(st *Status) error {
	if err := l.pointTo(l.Committed(), st.Active); err != nil {
		return err
	}
	cur := st.Active
	if st.State == Confirm {
		cur = st.Slot
	}
	return l.pointTo(l.Current(), cur)
}
