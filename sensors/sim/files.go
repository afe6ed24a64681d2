package sim

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Files is a temporary directory that stands for the root of a machine's
// file system, with the sysfs files a driver reads: 1-Wire probes
// (sys/bus/w1/devices/ID/w1_slave and temperature, as the kernel's w1_therm
// writes them) and the CPU's thermal zone (sys/class/thermal/.../temp).
// Files are replaced by rename, so a reader never sees half a file. Close
// removes the directory.
type Files struct {
	root string
}

// NewFiles creates the directory.
func NewFiles() (*Files, error) {
	dir, err := os.MkdirTemp("", "iotagent-sim-*")
	if err != nil {
		return nil, fmt.Errorf("sim files: %w", err)
	}
	return &Files{root: dir}, nil
}

// Root is the directory, for sensors.Host.Root.
func (f *Files) Root() string { return f.root }

// Close removes the directory.
func (f *Files) Close() error { return os.RemoveAll(f.root) }

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// W1Fault is a way a 1-Wire read goes wrong.
type W1Fault int

// The faults a DS18B20 can show through w1_therm.
const (
	// W1OK: a good conversion.
	W1OK W1Fault = iota
	// W1CRC: the scratchpad fails its CRC (crc=.. NO; the temperature
	// file is gone, as reading it fails on the chip).
	W1CRC
	// W1PowerOnReset: the probe did not convert and returns its power-on
	// value, 85 °C (a weak supply or parasite power).
	W1PowerOnReset
	// W1Zeros: the scratchpad reads all zeros with a valid CRC and
	// t=0 (the data line is stuck low: a short or a missing pull-up).
	W1Zeros
)

// DS18B20 is a simulated DS18B20 in a Files tree.
type DS18B20 struct {
	dir string

	mu    sync.Mutex
	tempC float64
	fault W1Fault
}

// W1Devices is where the kernel lists 1-Wire devices.
const W1Devices = "sys/bus/w1/devices"

// AddDS18B20 adds probe id (28-xxxxxxxxxxxx) reading tempC.
func (f *Files) AddDS18B20(id string, tempC float64) (*DS18B20, error) {
	if strings.ContainsAny(id, `/\`) || id == "" || id == "." || id == ".." {
		return nil, fmt.Errorf("sim ds18b20: bad id %q", id)
	}
	d := &DS18B20{dir: filepath.Join(f.root, W1Devices, id)}
	if err := d.Set("temperature_c", tempC); err != nil {
		return nil, err
	}
	return d, nil
}

// Set changes what the next read returns: "temperature_c", -55..125 °C,
// stored as the chip does, in 1/16 °C.
func (d *DS18B20) Set(name string, v float64) error {
	if name != "temperature_c" {
		return fmt.Errorf("sim ds18b20: no reading %q (it has temperature_c)", name)
	}
	if err := checkRange("ds18b20", "temperature °C", v, -55, 125); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tempC = v
	return d.writeLocked()
}

// SetFault makes the next reads show f until SetFault(W1OK).
func (d *DS18B20) SetFault(f W1Fault) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fault = f
	return d.writeLocked()
}

// Remove takes the probe off the bus (its directory disappears, as when
// the kernel drops a device that stopped answering).
func (d *DS18B20) Remove() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return os.RemoveAll(d.dir)
}

// Close implements sensors.SimControl; it does nothing (Files.Close
// removes the tree).
func (d *DS18B20) Close() error { return nil }

// W1CRC8 is the Dallas/Maxim 1-Wire CRC-8 (polynomial x⁸+x⁵+x⁴+1,
// reflected, initial 0).
func W1CRC8(b []byte) byte {
	var crc byte
	for _, x := range b {
		for range 8 {
			mix := (crc ^ x) & 1
			crc >>= 1
			if mix != 0 {
				crc ^= 0x8c
			}
			x >>= 1
		}
	}
	return crc
}

// DS18B20Scratchpad is the 9-byte scratchpad of a 12-bit DS18B20 at tempC,
// with its CRC.
func DS18B20Scratchpad(tempC float64) [9]byte {
	raw := int16(math.Round(tempC * 16))
	s := [9]byte{byte(raw), byte(uint16(raw) >> 8), 0x4b, 0x46, 0x7f, 0xff, 0x0c, 0x10}
	s[8] = W1CRC8(s[:8])
	return s
}

// W1Slave formats w1_therm's w1_slave file for a scratchpad.
func W1Slave(s [9]byte, crcOK bool, milliC int) string {
	var b strings.Builder
	for _, x := range s {
		fmt.Fprintf(&b, "%02x ", x)
	}
	verdict := "NO"
	if crcOK {
		verdict = "YES"
	}
	line := b.String()
	return fmt.Sprintf("%s: crc=%02x %s\n%st=%d\n", line, s[8], verdict, line, milliC)
}

func (d *DS18B20) writeLocked() error {
	s := DS18B20Scratchpad(d.tempC)
	raw := int16(uint16(s[1])<<8 | uint16(s[0]))
	milli := int(raw) * 1000 / 16
	crcOK := true
	switch d.fault {
	case W1CRC:
		s[8] ^= 0x5a
		crcOK = false
	case W1PowerOnReset:
		s = DS18B20Scratchpad(85)
		milli = 85000
	case W1Zeros:
		s, milli = [9]byte{}, 0
	}
	if err := writeFile(filepath.Join(d.dir, "w1_slave"), W1Slave(s, crcOK, milli)); err != nil {
		return fmt.Errorf("sim ds18b20: %w", err)
	}
	temp := filepath.Join(d.dir, "temperature")
	if !crcOK {
		if err := os.Remove(temp); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("sim ds18b20: %w", err)
		}
		return nil
	}
	if err := writeFile(temp, fmt.Sprintf("%d\n", milli)); err != nil {
		return fmt.Errorf("sim ds18b20: %w", err)
	}
	return nil
}

// ThermalZone is a simulated /sys/class/thermal/thermal_zoneN in a Files
// tree.
type ThermalZone struct {
	path string
	mu   sync.Mutex
}

// AddThermalZone adds thermal_zoneN of type typ ("cpu-thermal" on a Pi)
// at tempC.
func (f *Files) AddThermalZone(n int, typ string, tempC float64) (*ThermalZone, error) {
	dir := filepath.Join(f.root, "sys/class/thermal", fmt.Sprintf("thermal_zone%d", n))
	if err := writeFile(filepath.Join(dir, "type"), typ+"\n"); err != nil {
		return nil, fmt.Errorf("sim thermal: %w", err)
	}
	z := &ThermalZone{path: filepath.Join(dir, "temp")}
	if err := z.Set("temperature_c", tempC); err != nil {
		return nil, err
	}
	return z, nil
}

// Set changes the zone's temperature: "temperature_c", -40..125 °C,
// written in millidegrees as the kernel does.
func (z *ThermalZone) Set(name string, v float64) error {
	if name != "temperature_c" {
		return fmt.Errorf("sim cpu_temp: no reading %q (it has temperature_c)", name)
	}
	if err := checkRange("cpu_temp", "temperature °C", v, -40, 125); err != nil {
		return err
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if err := writeFile(z.path, fmt.Sprintf("%d\n", int(math.Round(v*1000)))); err != nil {
		return fmt.Errorf("sim cpu_temp: %w", err)
	}
	return nil
}

// WriteRaw replaces the zone's temp file with content (for tests of what
// a broken driver could write).
func (z *ThermalZone) WriteRaw(content string) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	return writeFile(z.path, content)
}

// Close implements sensors.SimControl; it does nothing (Files.Close
// removes the tree).
func (z *ThermalZone) Close() error { return nil }
