//go:build !linux

package defender

import "errors"

func diskFree(string) (uint64, error) { return 0, errors.New("statfs: not supported on this OS") }
