package tmpfstest

import (
	"strconv"
	"syscall"
)

func mount(dir string, size int64) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)+",mode=0700")
}

func unmount(dir string) error { return syscall.Unmount(dir, 0) }
