package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// loopDevice attaches img to a loop device with its partitions
// (/dev/loopNp1), detached when the test ends. The loop device stands in
// for a card reader: iotimage itself never uses one.
func loopDevice(t *testing.T, img string) string {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("a block device for --device needs root (losetup)")
	}
	out, err := exec.Command("losetup", "-f", "-P", "--show", img).CombinedOutput()
	if err != nil {
		skip("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// TestPrepareBlockDevice writes a card through its block device: refused
// without a terminal to confirm on and without --yes, written with --yes.
func TestPrepareBlockDevice(t *testing.T) {
	f := newFixture(t)
	img := makeImage(t)
	dev := loopDevice(t, img)
	before := sha(t, img)

	code, _, errs := prep(t, f.args("--device", dev)...)
	if code != exitRefused || !strings.Contains(errs, "not confirmed (no terminal to ask on)") || !strings.Contains(errs, "--yes") {
		t.Errorf("no --yes: exit %d\n%s", code, errs)
	}
	if sha(t, img) != before {
		t.Fatal("a refused --device changed the card")
	}

	r := mustPrep(t, f.args("--device", dev, "--yes")...)
	if r.Target != dev || r.Partition == nil || r.Partition.Label != "bootfs" {
		t.Errorf("result %+v", r)
	}
	fsckBoot(t, img)
	if _, ok := bootFiles(t, img)["iotagent-setup/iotagent_1.4.0_arm64.deb"]; !ok {
		t.Error("the package is not on the card")
	}
}

func TestMountOf(t *testing.T) {
	mounts := []byte("sysfs /sys sysfs rw 0 0\n/dev/loop10 /mnt/x ext4 ro 0 0\n/dev/sdb1 /media/alice/bootfs vfat rw 0 0\n/dev/mmcblk0p2 /media/alice/rootfs ext4 rw 0 0\n")
	tests := []struct {
		dev, src, dir string
	}{
		{"/dev/sdb", "/dev/sdb1", "/media/alice/bootfs"},
		{"/dev/mmcblk0", "/dev/mmcblk0p2", "/media/alice/rootfs"},
		{"/dev/sd", "", ""}, // not a prefix of a partition of its own
		{"/dev/sdc", "", ""},
		{"/dev/mmcblk1", "", ""},
		{"/dev/mmcblk0p2", "/dev/mmcblk0p2", "/media/alice/rootfs"},
		{"/dev/loop1", "", ""}, // /dev/loop10 is another device

	}
	for _, tt := range tests {
		src, dir, ok := mountOf(tt.dev, mounts)
		if src != tt.src || dir != tt.dir || ok != (tt.src != "") {
			t.Errorf("mountOf(%s) = %q, %q, %v; want %q, %q", tt.dev, src, dir, ok, tt.src, tt.dir)
		}
	}
}
