//go:build !linux

package tmpfstest

import "errors"

var errNotLinux = errors.New("tmpfs needs Linux")

func mount(string, int64) error { return errNotLinux }

func unmount(string) error { return errNotLinux }
