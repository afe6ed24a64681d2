// Package cputemp registers the "cpu_temp" part: the temperature of the
// Raspberry Pi's SoC, from the kernel's thermal zone
// (/sys/class/thermal/thermal_zone0/temp, in m°C). It reports
// temperature_c.
//
// The part's device selects another zone ("thermal_zone1"); the default is
// thermal_zone0, the CPU on a Pi. No options, bus or address.
package cputemp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/internal/drv"
	"github.com/iotagent/iotagent/sensors/sim"
)

// Type is the registry key.
const Type = "cpu_temp"

func init() {
	sensors.Register(sensors.Driver{
		Type:    Type,
		Summary: "the Pi's CPU temperature from /sys/class/thermal (device: thermal_zone0): temperature_c",
		Open:    Open,
		Sim:     Sim,
	})
}

type part struct {
	label string
	path  string
}

// validZone reports whether z is thermal_zoneN.
func validZone(z string) bool {
	n, ok := strings.CutPrefix(z, "thermal_zone")
	if !ok || n == "" || len(n) > 3 {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Open opens the part: p.Device is the zone, h.Root prefixes /sys.
func Open(ctx context.Context, p sensors.Part, h sensors.Host) (sensors.Sampler, error) {
	var o struct{}
	if err := drv.Options(p, &o); err != nil {
		return nil, err
	}
	zone := p.Device
	if zone == "" {
		zone = "thermal_zone0"
	}
	label := fmt.Sprintf("part %q (cpu_temp %s)", p.Name, zone)
	if !validZone(zone) || p.Bus != "" || p.Address != 0 {
		return nil, fmt.Errorf("%s: the device is a thermal zone (thermal_zone0), with no bus or address: %w", label, sensors.ErrOptions)
	}
	root := h.Root
	if root == "" {
		root = "/"
	}
	s := &part{label: label, path: filepath.Join(root, "sys/class/thermal", zone, "temp")}
	if _, err := s.Read(ctx); errors.Is(err, sensors.ErrNoDevice) {
		return nil, err
	}
	return s, nil
}

// Read reads the zone's temperature.
func (s *part) Read(ctx context.Context) (sensors.Values, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.label, err)
	}
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no %s: %w; not a Raspberry Pi, or its thermal driver is not loaded (ls /sys/class/thermal)", s.label, s.path, sensors.ErrNoDevice)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.label, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.label, err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", s.label, s.path, err)
	}
	return sensors.Values{"temperature_c": c}, nil
}

// Parse parses a thermal zone's temp file ("48312\n", m°C) into °C within
// -40..125.
func Parse(b []byte) (float64, error) {
	s := strings.TrimSuffix(string(b), "\n")
	milli, err := strconv.Atoi(s)
	if err != nil {
		if len(s) > 20 {
			s = s[:20]
		}
		return 0, fmt.Errorf("%q is not a temperature in m°C: %w", s, sensors.ErrCorrupt)
	}
	c := float64(milli) / 1000
	if err := drv.Check("temperature_c", c, -40, 125); err != nil {
		return 0, err
	}
	return c, nil
}

// Close does nothing: each Read opens the file.
func (s *part) Close() error { return nil }

type control struct {
	*sim.ThermalZone
	files *sim.Files
}

func (c control) Close() error { return c.files.Close() }

// Sim returns a sysfs tree (sim.Files) with the zone at 45 °C.
func Sim(p sensors.Part) (sensors.Host, sensors.SimControl, error) {
	zone := p.Device
	if zone == "" {
		zone = "thermal_zone0"
	}
	if !validZone(zone) {
		return sensors.Host{}, nil, fmt.Errorf("part %q (cpu_temp): device %q is not a thermal zone: %w", p.Name, zone, sensors.ErrOptions)
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(zone, "thermal_zone"))
	files, err := sim.NewFiles()
	if err != nil {
		return sensors.Host{}, nil, err
	}
	z, err := files.AddThermalZone(n, "cpu-thermal", 45)
	if err != nil {
		_ = files.Close()
		return sensors.Host{}, nil, err
	}
	return sensors.Host{Root: files.Root()}, control{z, files}, nil
}
