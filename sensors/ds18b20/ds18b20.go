// Package ds18b20 registers the "ds18b20" part: a Maxim DS18B20 1-Wire
// temperature probe (-55..125 °C) read through the Linux kernel's w1_therm
// driver in sysfs (dtoverlay=w1-gpio). It reports temperature_c.
//
// The part's device is the probe's id as the kernel names it
// (28-0123456789ab; also 10-, 22-, 3b- and 42- for the DS18S20, DS1822,
// MAX31850 and DS28EA00 that w1_therm reads alike): ls /sys/bus/w1/devices.
// The part has no options and no address or bus.
//
// Read reads /sys/bus/w1/devices/ID/w1_slave (each read makes the probe
// convert, 750 ms at 12 bits) and checks what the kernel's CRC check and
// a careful reader check: the CRC verdict and the CRC itself, a scratchpad
// of zeros (the data line held low), and 85.000 °C with the power-on
// scratchpad (the probe did not convert: a weak supply or parasite power).
// Kernels that only have the newer temperature file are read through it.
package ds18b20

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Type is the registry key.
const Type = "ds18b20"

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "Maxim DS18B20 1-Wire temperature probe through the kernel's w1_therm (device: its id, 28-…): temperature_c",
		Open:    Open,
		Sim:     Sim,
	})
}

// Hint is what to check when a probe is missing or misreads.
const Hint = "check dtoverlay=w1-gpio in /boot/firmware/config.txt (data on GPIO4, pin 7), the 4.7 kΩ pull-up between data and 3.3 V, and the probe's 3.3 V and GND"

// ValidID reports whether id is a w1_therm device id: a family (10, 22,
// 28, 3b, 42), a dash and 12 lower-case hex digits.
func ValidID(id string) bool {
	if len(id) != 15 || id[2] != '-' || !slices.Contains([]string{"10", "22", "28", "3b", "42"}, id[:2]) {
		return false
	}
	for _, c := range id[3:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

type part struct {
	label string
	dir   string // the device's directory
	root  string
}

// Open opens the part: p.Device is its id, h.Root prefixes /sys.
func Open(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	var o struct{}
	if err := drv.Options(p, &o); err != nil {
		return nil, err
	}
	label := fmt.Sprintf("part %q (ds18b20 %s)", p.Name, p.Device)
	if p.Bus != "" || p.Address != 0 {
		return nil, fmt.Errorf("%s: a 1-Wire probe has no bus or address, only its device id: %w", label, sensors.ErrOptions)
	}
	root := h.Root
	if root == "" {
		root = "/"
	}
	s := &part{label: label, root: root, dir: filepath.Join(root, sim.W1Devices, p.Device)}
	if !ValidID(p.Device) {
		return nil, fmt.Errorf("%s: device %q is not a 1-Wire probe id such as 28-0123456789ab (%s): %w", label, p.Device, s.present(), sensors.ErrOptions)
	}
	if _, err := os.Stat(s.dir); err != nil {
		return nil, s.absent(err)
	}
	return s, nil
}

// present lists the probes the kernel sees, for errors.
func (s *part) present() string {
	devs := filepath.Join(s.root, sim.W1Devices)
	entries, err := os.ReadDir(devs)
	if errors.Is(err, fs.ErrNotExist) {
		return "no " + filepath.Join("/", sim.W1Devices) + ": 1-Wire is not on"
	}
	var ids []string
	for _, e := range entries {
		if ValidID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	if len(ids) == 0 {
		return "no probe is on the bus"
	}
	return "probes on the bus: " + strings.Join(ids, ", ")
}

func (s *part) absent(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: not found (%s): %w; %s", s.label, s.present(), sensors.ErrNoDevice, Hint)
	}
	return fmt.Errorf("%s: %w", s.label, err)
}

// maxFile bounds what Read reads of a sysfs file (w1_slave is 75 bytes).
const maxFile = 4 << 10

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxFile))
}

// Read makes the probe convert and returns its temperature.
func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.label, err)
	}
	var milli int
	b, err := readFile(filepath.Join(s.dir, "w1_slave"))
	switch {
	case err == nil:
		if milli, err = ParseW1Slave(b); err != nil {
			return nil, fmt.Errorf("%s: w1_slave: %w; %s", s.label, err, Hint)
		}
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Stat(s.dir); serr != nil {
			return nil, s.absent(serr)
		}
		b, err = readFile(filepath.Join(s.dir, "temperature"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, s.absent(err)
			}
			// w1_therm fails the read (EIO) on a CRC error.
			return nil, fmt.Errorf("%s: temperature: %w: %w; %s", s.label, sensors.ErrCorrupt, err, Hint)
		}
		if milli, err = ParseTemperature(b); err != nil {
			return nil, fmt.Errorf("%s: temperature: %w; %s", s.label, err, Hint)
		}
	default:
		return nil, fmt.Errorf("%s: %w", s.label, err)
	}
	return sensors.Values{"temperature_c": float64(milli) / 1000}, nil
}

// Close does nothing: reads open and close the files.
func (s *part) Close() error { return nil }

// ParseW1Slave parses w1_therm's w1_slave file:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
//
// and returns t (m°C). The kernel's verdict, the CRC, a scratchpad of
// zeros and the 85 °C power-on value are checked.
func ParseW1Slave(b []byte) (int, error) {
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 {
		return 0, fmt.Errorf("%d lines, want 2: %w", len(lines), sensors.ErrCorrupt)
	}
	f1, f2 := strings.Fields(lines[0]), strings.Fields(lines[1])
	if len(f1) != 12 || f1[9] != ":" || !strings.HasPrefix(f1[10], "crc=") || len(f2) != 10 || !strings.HasPrefix(f2[9], "t=") {
		return 0, fmt.Errorf("not w1_therm's format (%q): %w", firstLine(b), sensors.ErrCorrupt)
	}
	var pad [9]byte
	for i := range pad {
		if f1[i] != f2[i] {
			return 0, fmt.Errorf("the two lines' scratchpads differ: %w", sensors.ErrCorrupt)
		}
		v, err := strconv.ParseUint(f1[i], 16, 8)
		if err != nil || len(f1[i]) != 2 {
			return 0, fmt.Errorf("scratchpad byte %q: %w", f1[i], sensors.ErrCorrupt)
		}
		pad[i] = byte(v)
	}
	switch f1[11] {
	case "YES":
	case "NO":
		return 0, fmt.Errorf("CRC error (crc=%s NO): %w", strings.TrimPrefix(f1[10], "crc="), sensors.ErrCorrupt)
	default:
		return 0, fmt.Errorf("CRC verdict %q: %w", f1[11], sensors.ErrCorrupt)
	}
	if crc := sim.W1CRC8(pad[:8]); crc != pad[8] {
		return 0, fmt.Errorf("CRC %02x, the scratchpad's is %02x: %w", pad[8], crc, sensors.ErrCorrupt)
	}
	if pad == [9]byte{} {
		return 0, fmt.Errorf("the scratchpad reads all zeros (the data line is held low: a short, or the pull-up is missing): %w", sensors.ErrCorrupt)
	}
	milli, err := strconv.Atoi(strings.TrimPrefix(f2[9], "t="))
	if err != nil {
		return 0, fmt.Errorf("t=%q: %w", strings.TrimPrefix(f2[9], "t="), sensors.ErrCorrupt)
	}
	if milli == 85000 && pad[0] == 0x50 && pad[1] == 0x05 {
		return 0, fmt.Errorf("85.000 °C with the power-on scratchpad: the probe did not convert (a weak supply or parasite power): %w", sensors.ErrImplausible)
	}
	if err := checkMilli(milli); err != nil {
		return 0, err
	}
	return milli, nil
}

// ParseTemperature parses w1_therm's temperature file ("23125\n", m°C).
func ParseTemperature(b []byte) (int, error) {
	s := strings.TrimSuffix(string(b), "\n")
	milli, err := strconv.Atoi(s)
	if err != nil || s != strings.TrimSpace(s) {
		return 0, fmt.Errorf("%q is not a temperature in m°C: %w", firstLine(b), sensors.ErrCorrupt)
	}
	if milli == 85000 {
		return 0, fmt.Errorf("85.000 °C, the power-on value: the probe did not convert (a weak supply or parasite power): %w", sensors.ErrImplausible)
	}
	if err := checkMilli(milli); err != nil {
		return 0, err
	}
	return milli, nil
}

func checkMilli(milli int) error {
	if milli < -55000 || milli > 125000 {
		return fmt.Errorf("%.3f °C, outside the probe's -55..125 °C: %w", float64(milli)/1000, sensors.ErrImplausible)
	}
	return nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if len(line) > 80 {
		line = line[:80]
	}
	return string(line)
}

// control is the simulated probe and its tree.
type control struct {
	*sim.DS18B20
	files *sim.Files
}

func (c control) Close() error { return c.files.Close() }

// Sim returns a sysfs tree (sim.Files) with the part's probe at 20 °C.
func Sim(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	if !ValidID(p.Device) {
		return sensors.Host{}, nil, fmt.Errorf("part %q (ds18b20): device %q is not a 1-Wire probe id such as 28-0123456789ab: %w", p.Name, p.Device, sensors.ErrOptions)
	}
	files, err := sim.NewFiles()
	if err != nil {
		return sensors.Host{}, nil, err
	}
	probe, err := files.AddDS18B20(p.Device, 20)
	if err != nil {
		_ = files.Close()
		return sensors.Host{}, nil, err
	}
	return sensors.Host{Root: files.Root()}, control{probe, files}, nil
}
