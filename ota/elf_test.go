package ota

import (
	"debug/elf"
	"os"
	"path/filepath"
	"testing"
)

// The hand-read ELF header agrees with debug/elf, on this test binary and
// on the machine table.
func TestReadELFHeaderAgreesWithDebugELF(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	typ, machine, err := readELFHeader(exe)
	if err != nil || elf.Type(typ) != f.Type || elf.Machine(machine) != f.Machine {
		t.Errorf("readELFHeader = %d, %d, %v; debug/elf says %v, %v", typ, machine, err, f.Type, f.Machine)
	}
	for arch, m := range elfMachine {
		if got, want := machineName(m), elf.Machine(m).String(); got != want {
			t.Errorf("%s: machineName(%d) = %s, debug/elf says %s", arch, m, got, want)
		}
	}
	if elfExec != uint16(elf.ET_EXEC) || elfDyn != uint16(elf.ET_DYN) {
		t.Error("ELF type constants differ from debug/elf's")
	}
}

func TestReadELFHeaderRefuses(t *testing.T) {
	dir := t.TempDir()
	good := fakeBinary(elf.EM_X86_64, "1.0.0", 0)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short", good[:19]},
		{"not ELF", append([]byte("#!/bin/sh\n"), make([]byte, 20)...)},
		{"bad class", append(append([]byte{}, good[:4]...), append([]byte{9}, good[5:]...)...)},
		{"bad encoding", append(append([]byte{}, good[:5]...), append([]byte{9}, good[6:]...)...)},
		{"bad version", append(append([]byte{}, good[:6]...), append([]byte{9}, good[7:]...)...)},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, tc.data, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, _, err := readELFHeader(p); err == nil {
			t.Errorf("%s: readELFHeader accepted it", tc.name)
		}
		if err := checkELF(p, "amd64"); err == nil {
			t.Errorf("%s: checkELF accepted it", tc.name)
		}
	}
}
