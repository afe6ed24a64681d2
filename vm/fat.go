package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
)

// MakeFAT writes a FAT file system image of sizeMiB with label holding
// files (by slash-separated path), with mkfs.vfat and mtools: no root, no
// loop mount.
func MakeFAT(img, label string, sizeMiB int, files map[string][]byte) error {
	_ = os.Remove(img)
	if out, err := exec.Command("mkfs.vfat", "-C", "-n", label, img, strconv.Itoa(sizeMiB*1024)).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.vfat: %v: %s (apt-get install dosfstools)", err, out)
	}
	tmp, err := os.MkdirTemp("", "vmfat")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	made := map[string]bool{".": true}
	for _, n := range names {
		for d := path.Dir(n); !made[d]; d = path.Dir(d) {
			made[d] = true
		}
	}
	dirs := make([]string, 0, len(made))
	for d := range made {
		if d != "." {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs) // parents before children
	for _, d := range dirs {
		if err := mtools("mmd", "-i", img, "::/"+d); err != nil {
			return err
		}
	}
	for i, n := range names {
		src := filepath.Join(tmp, strconv.Itoa(i))
		if err := os.WriteFile(src, files[n], 0o644); err != nil {
			return err
		}
		if err := mtools("mcopy", "-i", img, src, "::/"+n); err != nil {
			return err
		}
	}
	return nil
}

func mtools(args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s (apt-get install mtools)", args[0], err, out)
	}
	return nil
}
