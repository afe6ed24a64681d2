//go:build !linux

package sim

import (
	"context"
	"errors"
	"fmt"
)

// FeedFIFO is only implemented on Linux; elsewhere it returns an error
// wrapping errors.ErrUnsupported.
func FeedFIFO(ctx context.Context, path string, fn func(line string)) error {
	return fmt.Errorf("feed fifo %s: %w", path, errors.ErrUnsupported)
}
