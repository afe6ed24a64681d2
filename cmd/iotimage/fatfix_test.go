package main

import (
	"os"
	"os/exec"
	"testing"

	"github.com/iotagent/iotagent/internal/mbr"
)

// TestFAT32Fix writes with go-diskfs alone, then corrects with fat32Fix:
// fsck.fat -n finds nothing afterwards, and fat32Fix changed something
// exactly when fsck.fat found something before.
func TestFAT32Fix(t *testing.T) {
	img := makeImage(t)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	part := mbr.Partition{Index: 1, Type: 0x0c, Start: testBootOffset, Size: testBootSectors * 512}
	x, err := openFAT(f, img, part)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return x.Mkdir("iotagent") },
		func() error { return x.WriteFile("iotagent/config.json", make([]byte, 3000)) },
		func() error { return x.WriteFile("iotagent/config.json", []byte("{}")) }, // shorter: frees clusters
		func() error { return x.Mkdir("iotagent-setup") },
		func() error { return x.WriteFile("iotagent-setup/iotagent_1.4.0_arm64.deb", make([]byte, 70000)) },
		func() error { return x.Remove("iotagent-setup/iotagent_1.4.0_arm64.deb") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	x.written = false // no fix on Close
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	needTools(t, "fsck.fat")
	before := fsckClean(t, img)

	f, err = os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fx, err := readFAT32(f, int64(part.Start), int64(part.Size))
	if err != nil {
		t.Fatal(err)
	}
	fixes, err := fx.fix()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("go-diskfs alone: fsck.fat clean %v; fat32Fix: %q", before, fixes)
	if before != (len(fixes) == 0) {
		t.Errorf("fsck.fat clean before: %v, but fat32Fix changed %q", before, fixes)
	}
	fsckBoot(t, img)
	again, err := readFAT32(f, int64(part.Start), int64(part.Size))
	if err != nil {
		t.Fatal(err)
	}
	if fixes, err := again.fix(); err != nil || len(fixes) != 0 {
		t.Errorf("a second fat32Fix changed %q (%v)", fixes, err)
	}
}

// fsckClean reports whether fsck.fat -n finds nothing in the boot partition.
func fsckClean(t *testing.T, img string) bool {
	t.Helper()
	out, err := exec.Command("fsck.fat", "-n", bootCopy(t, img)).CombinedOutput()
	t.Logf("fsck.fat -n:\n%s", out)
	return err == nil
}
