package provision

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Default sources of SerialNumber.
const (
	CPUInfoPath   = "/proc/cpuinfo"
	MachineIDPath = "/etc/machine-id"
)

// ErrNoSerial: neither source has a serial number.
var ErrNoSerial = errors.New("provision: no serial number")

// SerialNumber returns the Raspberry Pi's serial number (the Serial line
// of /proc/cpuinfo), else /etc/machine-id.
func SerialNumber() (string, error) { return SerialNumberFrom(CPUInfoPath, MachineIDPath) }

// SerialNumberFrom is SerialNumber with other paths. A Serial of only
// zeros (some boards and emulators) does not count.
func SerialNumberFrom(cpuinfo, machineID string) (string, error) {
	if b, err := os.ReadFile(cpuinfo); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok || strings.TrimSpace(k) != "Serial" {
				continue
			}
			v = strings.TrimSpace(v)
			if strings.Trim(v, "0") != "" && validSerial(v) {
				return v, nil
			}
		}
	}
	b, err := os.ReadFile(machineID)
	if err != nil {
		return "", fmt.Errorf("%w: %s has no Serial and %w", ErrNoSerial, cpuinfo, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" || !validSerial(v) {
		return "", fmt.Errorf("%w: %s has no Serial and %s is empty or malformed", ErrNoSerial, cpuinfo, machineID)
	}
	return v, nil
}

// validSerial keeps what can name a thing: [a-zA-Z0-9:_-]{1,128}.
func validSerial(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
