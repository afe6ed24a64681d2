package sensors

import "errors"

// Sentinel errors of the registry's drivers (the parts a Sampler reads).
// A driver's error names the part, its type and where it is (bus and
// address, 1-Wire id, file or command) and wraps one of these; test with
// errors.Is.
var (
	// ErrNoDevice: nothing answered where the part should be (an I²C
	// NACK, a 1-Wire id or a file that is not there, a command that is
	// not installed). The message says what to check.
	ErrNoDevice = errors.New("no device answered")
	// ErrWrongChip: a device answered at the part's address but it is
	// not the part's chip (its id registers say what it is).
	ErrWrongChip = errors.New("another chip answered")
	// ErrImplausible: the part answered with a value it cannot measure
	// (outside its range, NaN, a power-on reset value).
	ErrImplausible = errors.New("reading outside the part's range")
	// ErrCorrupt: the part answered with data that fails its check (a
	// 1-Wire or Sensirion CRC, output that is not the expected format).
	ErrCorrupt = errors.New("corrupt data from the part")
	// ErrOptions: the part's options, address or device are not valid
	// for its type.
	ErrOptions = errors.New("invalid part configuration")
)
