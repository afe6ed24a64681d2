package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/iotagent/iotagent/internal/mbr"
)

// MakeFAT writes a FAT file system image of sizeMiB with label holding
// files (by slash-separated path), with mkfs.vfat and mtools: no root, no
// loop mount.
func MakeFAT(img, label string, sizeMiB int, files map[string][]byte) error {
	_ = os.Remove(img)
	if out, err := exec.Command("mkfs.vfat", "-C", "-n", label, img, strconv.Itoa(sizeMiB*1024)).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.vfat: %v: %s (apt-get install dosfstools)", err, out)
	}
	return AddToFAT(img, files)
}

// AddToFAT writes files (by slash-separated path, replacing any there) into
// the FAT file system fat: an image file, or IMG@@OFFSET for a partition
// of a disk image (mtools' syntax, see fatImage).
func AddToFAT(fat string, files map[string][]byte) error {
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
	var dirs []string
	for _, n := range names {
		for d := path.Dir(n); !made[d]; d = path.Dir(d) {
			made[d] = true
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs) // parents before children
	for _, d := range dirs {
		if err := mtools("mmd", "-D", "s", "-i", fat, "::/"+d); err != nil {
			return err
		}
	}
	for i, n := range names {
		src := filepath.Join(tmp, strconv.Itoa(i))
		if err := os.WriteFile(src, files[n], 0o644); err != nil {
			return err
		}
		if err := mtools("mcopy", "-o", "-i", fat, src, "::/"+n); err != nil {
			return err
		}
	}
	return nil
}

// ReadFAT reads the file name (slash-separated path) from the FAT file
// system fat (see AddToFAT).
func ReadFAT(fat, name string) ([]byte, error) {
	cmd := exec.Command("mtype", "-i", fat, "::/"+name)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("mtype %s: %v", name, err)
	}
	return out, nil
}

// fatImage names a partition at offset of a disk image for mtools.
func fatImage(img string, offset int64) string {
	return img + "@@" + strconv.FormatInt(offset, 10)
}

// BootPartitionOffset is the byte offset of the first FAT partition in the
// MBR partition table of the disk image img (Raspberry Pi OS: partition
// 1, type 0x0c).
func BootPartitionOffset(img string) (int64, error) {
	f, err := os.Open(img)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	p, _, err := mbr.Boot(f, fi.Size())
	if err != nil {
		return 0, fmt.Errorf("%s: %w", img, err)
	}
	return int64(p.Start), nil
}

func mtools(args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s (apt-get install mtools)", args[0], err, out)
	}
	return nil
}
