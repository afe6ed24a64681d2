package tpm

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/tcp"
)

// Defaults of TPMConfig.
const (
	// DefaultDevice is the kernel's TPM resource manager: several processes
	// (the agent, tpm2-tools) may use it at once, and it flushes a process's
	// transient objects when the process exits.
	DefaultDevice = "/dev/tpmrm0"

	// DefaultHandle is where the device key is persisted: in the owner's
	// range of persistent handles (0x81000000-0x817FFFFF), clear of the
	// TCG-reserved SRK (0x81000001) and EK (0x81010001) handles.
	DefaultHandle uint32 = 0x81000010

	// Owner-hierarchy persistent handles (TCG "Registry of Reserved TPM 2.0
	// Handles and Localities": 0x81000000-0x817FFFFF).
	minOwnerPersistent uint32 = 0x81000000
	maxOwnerPersistent uint32 = 0x817FFFFF
)

// TPMConfig says which TPM to use and where the device key lives in it.
type TPMConfig struct {
	// Device is a character device ("/dev/tpmrm0", the default when empty)
	// or "tcp://HOST:PORT" for a software TPM such as swtpm, whose command
	// port is PORT and whose control (platform) port is PORT+1.
	Device string
	// Handle is the persistent handle of the device key; 0 means
	// DefaultHandle. It must be an owner persistent handle
	// (0x81000000-0x817FFFFF).
	Handle uint32
}

// withDefaults returns c with the zero fields set to their defaults.
func (c TPMConfig) withDefaults() TPMConfig {
	if c.Device == "" {
		c.Device = DefaultDevice
	}
	if c.Handle == 0 {
		c.Handle = DefaultHandle
	}
	return c
}

// Validate reports what is wrong with c (after defaults), or nil.
func (c TPMConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if _, err := parseDevice(c.Device); err != nil {
		errs = append(errs, err)
	}
	if c.Handle < minOwnerPersistent || c.Handle > maxOwnerPersistent {
		errs = append(errs, fmt.Errorf("TPM handle 0x%08x is not an owner persistent handle (0x%08x to 0x%08x)",
			c.Handle, minOwnerPersistent, maxOwnerPersistent))
	}
	return errors.Join(errs...)
}

// device is a parsed TPMConfig.Device.
type device struct {
	path     string // character device, or "" for tcp
	cmdAddr  string // tcp: host:port of the command port
	platAddr string // tcp: host:port+1
}

// parseDevice parses a TPMConfig.Device value.
func parseDevice(s string) (device, error) {
	if rest, ok := strings.CutPrefix(s, "tcp://"); ok {
		host, portStr, err := net.SplitHostPort(rest)
		if err != nil || host == "" || strings.ContainsAny(rest, "/?#@ ") {
			return device{}, fmt.Errorf("TPM device %q: want tcp://HOST:PORT, e.g. tcp://127.0.0.1:2321", s)
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || port == 0 || port == 65535 {
			return device{}, fmt.Errorf("TPM device %q: port %q is not 1 to 65534 (the platform port is PORT+1)", s, portStr)
		}
		return device{
			cmdAddr:  net.JoinHostPort(host, strconv.FormatUint(port, 10)),
			platAddr: net.JoinHostPort(host, strconv.FormatUint(port+1, 10)),
		}, nil
	}
	if strings.Contains(s, "://") {
		return device{}, fmt.Errorf("TPM device %q: want a device path such as %s or tcp://HOST:PORT", s, DefaultDevice)
	}
	if !strings.HasPrefix(s, "/") || strings.ContainsRune(s, 0) {
		return device{}, fmt.Errorf("TPM device %q: want an absolute device path such as %s or tcp://HOST:PORT", s, DefaultDevice)
	}
	return device{path: s}, nil
}

// String is the form the configuration uses, for error messages.
func (d device) String() string {
	if d.path != "" {
		return d.path
	}
	return "tcp://" + d.cmdAddr
}

// open connects to the TPM.
func (d device) open() (transport.TPMCloser, error) {
	if d.path != "" {
		t, err := openDevice(d.path)
		if err != nil {
			return nil, deviceError(d.path, err)
		}
		return t, nil
	}
	t, err := tcp.Open(tcp.Config{CommandAddress: d.cmdAddr, PlatformAddress: d.platAddr})
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, &noTPMError{
				msg: fmt.Sprintf("open %s: %v: is swtpm running? (swtpm socket --tpm2 --server type=tcp,port=PORT --ctrl type=tcp,port=PORT+1 --flags not-need-init,startup-clear --tpmstate dir=DIR)", d, err),
				err: err,
			}
		}
		return nil, fmt.Errorf("open %s: %w", d, err)
	}
	return t, nil
}

// deviceError explains a failure to open the TPM character device.
func deviceError(path string, err error) error {
	var pe *fs.PathError
	cause := err
	if errors.As(err, &pe) {
		cause = pe.Err // "stat /dev/tpmrm0: ..." -> "open /dev/tpmrm0: ..."
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &noTPMError{
			msg: fmt.Sprintf("open %s: %v: is the TPM enabled (dtoverlay=tpm-slb9670) and is this user in group tss?", path, cause),
			err: err,
		}
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("open %s: %w: is this user in group tss? (SupplementaryGroups=tss in the systemd unit)", path, cause)
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// noTPMError is an error that wraps ErrNoTPM and its cause, with its own
// message.
type noTPMError struct {
	msg string
	err error
}

func (e *noTPMError) Error() string   { return e.msg }
func (e *noTPMError) Unwrap() []error { return []error{ErrNoTPM, e.err} }
