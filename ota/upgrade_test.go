package ota

import (
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/internal/statefile"
)

// writeBinary writes a fake binary of version for machine into dir.
func writeBinary(t *testing.T, dir string, machine elf.Machine, version string) string {
	t.Helper()
	p := filepath.Join(dir, "iotagent-"+version)
	if err := os.WriteFile(p, fakeBinary(machine, version, 512), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// snapshot is what Upgrade may change: state.json, both slots' binaries
// and both links.
type snapshot struct {
	State, SlotA, SlotB, Current, Committed string
}

func snap(t *testing.T, dir string) snapshot {
	t.Helper()
	l := NewLayout(dir)
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	link := func(p string) string { s, _ := os.Readlink(p); return s }
	return snapshot{read(l.statePath()), read(l.SlotBinary("a")), read(l.SlotBinary("b")), link(l.Current()), link(l.Committed())}
}

func TestUpgrade(t *testing.T) {
	type setup func(t *testing.T, dir, v1 string)
	initV1 := func(t *testing.T, dir, v1 string) {
		if err := Init(dir, v1, "1.0.0"); err != nil {
			t.Fatal(err)
		}
	}
	// withState replaces the state after Init with st (slot b holds 2.0.0).
	withState := func(st Status) setup {
		return func(t *testing.T, dir, v1 string) {
			initV1(t, dir, v1)
			l := NewLayout(dir)
			if err := os.WriteFile(l.SlotBinary("b"), fakeBinary(deviceMachine(), "2.0.0", 512), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := l.save(&st, time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := l.repair(); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name      string
		setup     setup
		version   string
		machine   elf.Machine
		wantErr   error  // nil: success
		unchanged bool   // nothing on disk may change
		slot      string // the committed slot afterwards, holding version
	}{
		{name: "fresh install", setup: func(*testing.T, string, string) {}, version: "3.0.0", slot: "a"},
		{name: "same version", setup: initV1, version: "1.0.0", unchanged: true},
		{name: "other version", setup: initV1, version: "3.0.0", slot: "a"},
		{name: "older version", setup: initV1, version: "0.9.0", slot: "a"},
		{name: "after an OTA commit: into slot b", version: "3.0.0", slot: "b",
			setup: withState(Status{State: Committed, Active: "b", ActiveVersion: "2.0.0", FromVersion: "1.0.0", Release: Release{Version: "2.0.0"}})},
		{name: "after a rollback", version: "3.0.0", slot: "a",
			setup: withState(Status{State: RolledBack, Active: "a", ActiveVersion: "1.0.0", Failed: []string{"2.0.0"}})},
		{name: "during a download", version: "3.0.0", wantErr: ErrBusy, unchanged: true,
			setup: withState(Status{State: Download, Active: "a", ActiveVersion: "1.0.0", Slot: "b", Release: Release{Version: "2.0.0"}})},
		{name: "during a trial", version: "3.0.0", wantErr: ErrBusy, unchanged: true,
			setup: withState(Status{State: Confirm, Active: "a", ActiveVersion: "1.0.0", Slot: "b", Starts: 1, Release: Release{Version: "2.0.0"}})},
		{name: "binary for another CPU", setup: initV1, version: "3.0.0", machine: elf.EM_MIPS, wantErr: ErrWrongArch, unchanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src := t.TempDir()
			tt.setup(t, dir, writeBinary(t, src, deviceMachine(), "1.0.0"))
			machine := tt.machine
			if machine == 0 {
				machine = deviceMachine()
			}
			bin := writeBinary(t, src, machine, tt.version)
			before := snap(t, dir)
			l := NewLayout(dir)
			// An agent running from the committed slot keeps its binary.
			var running *os.File
			if before.Committed != "" {
				var err error
				if running, err = os.Open(filepath.Join(l.Committed(), Binary)); err != nil {
					t.Fatal(err)
				}
				defer running.Close()
			}
			err := Upgrade(dir, bin, tt.version)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Upgrade = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Upgrade: %v", err)
			}
			if tt.unchanged {
				if diff := cmp.Diff(before, snap(t, dir)); diff != "" {
					t.Errorf("Upgrade changed the slots (-before +after):\n%s", diff)
				}
				return
			}
			st, err := l.load()
			if err != nil {
				t.Fatal(err)
			}
			if st.Active != tt.slot || st.ActiveVersion != tt.version || !st.State.Terminal() {
				t.Errorf("state %s, active %s %s; want terminal, %s %s", st.State, st.Active, st.ActiveVersion, tt.slot, tt.version)
			}
			if linkSlot(l.Current()) != tt.slot || linkSlot(l.Committed()) != tt.slot {
				t.Errorf("current -> %q, committed -> %q, want %s", linkSlot(l.Current()), linkSlot(l.Committed()), tt.slot)
			}
			if got := versionOf(filepath.Join(l.Current(), Binary)); got != tt.version {
				t.Errorf("current/iotagent is %q, want %q", got, tt.version)
			}
			if fi, err := os.Stat(l.SlotBinary(tt.slot)); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("slot binary: %v, %v", fi, err)
			}
			if running != nil {
				want := before.SlotA
				if before.Committed == filepath.Join("slots", "b") {
					want = before.SlotB
				}
				if b, err := io.ReadAll(running); err != nil || string(b) != want {
					t.Errorf("the running binary changed under the agent: %v", err)
				}
			}
			// Idempotent: the same upgrade again changes nothing.
			again := snap(t, dir)
			if err := Upgrade(dir, bin, tt.version); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(again, snap(t, dir)); diff != "" {
				t.Errorf("second Upgrade changed things (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUpgradeThenOTA: the version a package installed is the one an OTA
// update starts from, and PreStart accepts it.
func TestUpgradeThenOTA(t *testing.T) {
	f := newFixture(t, 2048)
	v15 := writeBinary(t, t.TempDir(), deviceMachine(), "1.5.0")
	if err := Upgrade(f.dir, v15, "1.5.0"); err != nil {
		t.Fatal(err)
	}
	if d, err := PreStart(f.dir, time.Now()); err != nil || d.Slot != "a" || d.Trial {
		t.Fatalf("PreStart after Upgrade: %+v, %v", d, err)
	}
	if got := f.runningVersion(); got != "1.5.0" {
		t.Fatalf("running %q after the package upgrade", got)
	}
	for i := 0; ; i++ {
		out, err := life(context.Background(), f, "job-1", f.rel, healthy)
		if err != nil {
			t.Fatal(err)
		}
		if out == "done" {
			break
		}
		if i > 5 {
			t.Fatal("no end")
		}
	}
	f.check(t, Committed, "2.0.0")
	st, _ := NewLayout(f.dir).load()
	if st.FromVersion != "1.5.0" {
		t.Errorf("from_version %q, want the packaged 1.5.0", st.FromVersion)
	}
}

func TestPreStartRecovery(t *testing.T) {
	const garbage = "{\"state\":\"confirm\",\"active\":\"b\",\"slo" // a torn write
	tests := []struct {
		name      string
		state     string                       // state.json's content
		prepare   func(t *testing.T, l Layout) // after Init (1.0.0 in a) and 2.0.0 in b
		wantSlot  string
		wantErr   string // "": recovers
		wantCause string // in the reason or the error
	}{
		{name: "garbage, committed link kept", state: garbage, wantSlot: "b", wantCause: "parse ota state",
			prepare: func(t *testing.T, l Layout) { pointOrFail(t, l, l.Committed(), "b") }},
		{name: "bad active slot", state: `{"state":"idle","active":"c"}`, wantSlot: "a", wantCause: `bad active slot "c"`},
		{name: "empty file", state: "", wantSlot: "a", wantCause: "parse ota state"},
		{name: "committed link missing", state: garbage, wantSlot: "a", wantCause: "parse ota state",
			prepare: func(t *testing.T, l Layout) { os.Remove(l.Committed()) }},
		{name: "committed link to an unusable slot", state: garbage, wantSlot: "b", wantCause: "parse ota state",
			prepare: func(t *testing.T, l Layout) {
				os.WriteFile(l.SlotBinary("a"), []byte("#!/bin/sh\n"), 0o755)
			}},
		{name: "committed link missing, slot a empty", state: garbage, wantSlot: "b", wantCause: "parse ota state",
			prepare: func(t *testing.T, l Layout) {
				os.Remove(l.Committed())
				os.Remove(l.SlotBinary("a"))
			}},
		{name: "no usable slot", state: garbage, wantErr: "no slot holds a usable binary", wantCause: "parse ota state",
			prepare: func(t *testing.T, l Layout) {
				os.WriteFile(l.SlotBinary("a"), fakeBinary(elf.EM_MIPS, "1.0.0", 10), 0o755)
				os.Remove(l.SlotBinary("b"))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Init(dir, writeBinary(t, t.TempDir(), deviceMachine(), "1.0.0"), "1.0.0"); err != nil {
				t.Fatal(err)
			}
			l := NewLayout(dir)
			if err := os.WriteFile(l.SlotBinary("b"), fakeBinary(deviceMachine(), "2.0.0", 512), 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.prepare != nil {
				tt.prepare(t, l)
			}
			if err := os.WriteFile(l.statePath(), []byte(tt.state), 0o600); err != nil {
				t.Fatal(err)
			}
			d, err := PreStart(dir, time.Now())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.wantCause) {
					t.Fatalf("PreStart = %+v, %v; want an error with %q and %q", d, err, tt.wantErr, tt.wantCause)
				}
				if b, _ := os.ReadFile(l.statePath()); string(b) != tt.state {
					t.Errorf("state.json changed to %q without a recovery", b)
				}
				return
			}
			if err != nil {
				t.Fatalf("PreStart: %v", err)
			}
			if d.Slot != tt.wantSlot || d.Trial || d.RolledBack || !strings.Contains(d.Reason, "recovered slot "+tt.wantSlot) || !strings.Contains(d.Reason, tt.wantCause) {
				t.Errorf("decision %+v, want slot %s recovered because of %q", d, tt.wantSlot, tt.wantCause)
			}
			if b, err := os.ReadFile(movedState(t, l)); err != nil || string(b) != tt.state {
				t.Errorf("state.json.corrupt-* = %q, %v; want the bad file kept", b, err)
			}
			if evs, err := statefile.Events(dir); err != nil || len(evs) != 1 || evs[0].File != l.statePath() || !strings.Contains(evs[0].Reason, tt.wantCause) {
				t.Errorf("state journal %+v, %v: want one event for %s", evs, err, l.statePath())
			}
			st, err := l.load()
			if err != nil || st.State != Idle || st.Active != tt.wantSlot {
				t.Fatalf("state after recovery %+v, %v", st, err)
			}
			if linkSlot(l.Current()) != tt.wantSlot || linkSlot(l.Committed()) != tt.wantSlot {
				t.Errorf("current -> %q, committed -> %q, want %s", linkSlot(l.Current()), linkSlot(l.Committed()), tt.wantSlot)
			}
			// The next start is an ordinary one.
			if d, err := PreStart(dir, time.Now()); err != nil || d.Slot != tt.wantSlot || d.Reason != "" {
				t.Errorf("next PreStart: %+v, %v", d, err)
			}
		})
	}
}

func pointOrFail(t *testing.T, l Layout, link, slot string) {
	t.Helper()
	if err := l.pointTo(link, slot); err != nil {
		t.Fatal(err)
	}
}

// TestInitRecovers: the unit runs ota init before ota prestart, which
// runs through the committed link; with an unreadable state.json and that
// link gone, Init must bring it back (or start over from the packaged
// binary when no slot is usable) so that PreStart can run at all.
func TestInitRecovers(t *testing.T) {
	const garbage = "\x00\x00\x00"
	tests := []struct {
		name        string
		breakSlots  func(l Layout)
		upgrade     bool
		wantSlot    string
		wantVersion string // of current/iotagent
	}{
		{name: "link kept", breakSlots: func(Layout) {}, wantSlot: "b", wantVersion: "2.0.0"},
		{name: "link missing: the first usable slot", breakSlots: func(l Layout) { os.Remove(l.Committed()) }, wantSlot: "a", wantVersion: "1.0.0"},
		{name: "link missing, slot a unusable", wantSlot: "b", wantVersion: "2.0.0", breakSlots: func(l Layout) {
			os.Remove(l.Committed())
			os.WriteFile(l.SlotBinary("a"), fakeBinary(elf.EM_MIPS, "1.0.0", 10), 0o755)
		}},
		{name: "no usable slot: start over", wantSlot: "a", wantVersion: "3.0.0", breakSlots: func(l Layout) {
			os.Remove(l.Committed())
			os.Remove(l.Current())
			os.WriteFile(l.SlotBinary("a"), nil, 0o755)
			os.WriteFile(l.SlotBinary("b"), []byte("MZ"), 0o755)
		}},
		{name: "upgrade: recovered, then installed", upgrade: true, breakSlots: func(Layout) {}, wantSlot: "b", wantVersion: "3.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src := t.TempDir()
			if err := Init(dir, writeBinary(t, src, deviceMachine(), "1.0.0"), "1.0.0"); err != nil {
				t.Fatal(err)
			}
			l := NewLayout(dir)
			os.WriteFile(l.SlotBinary("b"), fakeBinary(deviceMachine(), "2.0.0", 512), 0o755)
			pointOrFail(t, l, l.Committed(), "b")
			pointOrFail(t, l, l.Current(), "b")
			os.WriteFile(l.statePath(), []byte(garbage), 0o600)
			tt.breakSlots(l)
			v3 := writeBinary(t, src, deviceMachine(), "3.0.0")
			var err error
			if tt.upgrade {
				err = Upgrade(dir, v3, "3.0.0")
			} else {
				err = Init(dir, v3, "3.0.0")
			}
			if err != nil {
				t.Fatalf("Init/Upgrade over an unreadable state: %v", err)
			}
			if b, _ := os.ReadFile(movedState(t, l)); string(b) != garbage {
				t.Errorf("state.json.corrupt-* = %q", b)
			}
			if linkSlot(l.Committed()) != tt.wantSlot || linkSlot(l.Current()) != tt.wantSlot {
				t.Errorf("committed -> %q, current -> %q, want %s", linkSlot(l.Committed()), linkSlot(l.Current()), tt.wantSlot)
			}
			if got := versionOf(filepath.Join(l.Committed(), Binary)); got != tt.wantVersion {
				t.Errorf("committed/iotagent is %q, want %q", got, tt.wantVersion)
			}
			if d, err := PreStart(dir, time.Now()); err != nil || d.Slot != tt.wantSlot {
				t.Errorf("PreStart afterwards: %+v, %v", d, err)
			}
		})
	}
}

// movedState is the one moved-aside state.json.
func movedState(t *testing.T, l Layout) string {
	t.Helper()
	m, _ := filepath.Glob(l.statePath() + statefile.CorruptInfix + "*")
	if len(m) != 1 {
		t.Fatalf("moved-aside state files: %q, want one", m)
	}
	return m[0]
}
