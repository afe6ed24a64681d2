//go:build windows

package tpm

import (
	"errors"

	"github.com/google/go-tpm/tpm2/transport"
)

// openDevice is not supported on Windows; use tcp://HOST:PORT.
func openDevice(path string) (transport.TPMCloser, error) {
	return nil, errors.New("TPM character devices are not supported on Windows; use tcp://HOST:PORT")
}
