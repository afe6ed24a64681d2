package defender

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
)

// Collector reads the device-side metrics. The zero value reads the real
// /proc and /sys and maps addresses with net.Interfaces.
type Collector struct {
	ProcRoot string // "" means /proc
	SysRoot  string // "" means /sys
	// StateDir is where free disk space is measured; "" skips it.
	StateDir string
	// Interfaces maps a local IP address to its interface name; nil means
	// InterfaceAddrs (net.Interfaces).
	Interfaces func() (map[netip.Addr]string, error)
}

// Snapshot is one collection.
type Snapshot struct {
	TCPListen   []Port
	UDPListen   []Port
	Established []Connection
	// Net holds the counters of each interface (cumulative, not deltas).
	Net map[string]Counters
	// CPUTempC is the first thermal zone's temperature (the SoC on a Pi);
	// nil when there is none.
	CPUTempC *float64
	// DiskFreeBytes is the space available to the agent in StateDir; nil
	// when StateDir is empty or statfs failed.
	DiskFreeBytes *uint64
}

// InterfaceAddrs maps every address of every interface to its name.
func InterfaceAddrs() (map[netip.Addr]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	m := map[netip.Addr]string{}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP); ok {
					m[ip.Unmap()] = ifc.Name
				}
			}
		}
	}
	return m, nil
}

// Collect reads every source. Missing files (no IPv6, no thermal zone) are
// skipped; a file in an unexpected format is an error.
func (c *Collector) Collect() (Snapshot, error) {
	proc, sys := cmp.Or(c.ProcRoot, "/proc"), cmp.Or(c.SysRoot, "/sys")
	var s Snapshot
	ifaces := c.Interfaces
	if ifaces == nil {
		ifaces = InterfaceAddrs
	}
	byAddr, err := ifaces()
	if err != nil {
		return s, err
	}
	ifName := func(a netip.Addr) string {
		if a.IsUnspecified() {
			return ""
		}
		return byAddr[a]
	}
	type key struct {
		port int
		ifc  string
	}
	for _, proto := range []string{"tcp", "udp"} {
		seen := map[key]bool{}
		var ports []Port
		for _, name := range []string{proto, proto + "6"} {
			socks, err := readSockets(filepath.Join(proc, "net", name))
			if err != nil {
				return s, err
			}
			for _, so := range socks {
				listening := so.State == stateListen
				if proto == "udp" {
					// An unconnected UDP socket receives from anyone.
					listening = !so.Remote.Addr().IsValid() || so.Remote.Port() == 0 && so.Remote.Addr().IsUnspecified()
				}
				if proto == "tcp" && so.State == stateEstablished {
					s.Established = append(s.Established, Connection{
						LocalInterface: ifName(so.Local.Addr()),
						LocalPort:      int(so.Local.Port()),
						RemoteAddr:     so.Remote.String(),
					})
				}
				if !listening || so.Local.Port() == 0 {
					continue
				}
				k := key{int(so.Local.Port()), ifName(so.Local.Addr())}
				if seen[k] {
					continue
				}
				seen[k] = true
				ports = append(ports, Port{Interface: k.ifc, Port: k.port})
			}
		}
		slices.SortFunc(ports, func(a, b Port) int {
			return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Interface, b.Interface))
		})
		if proto == "tcp" {
			s.TCPListen = ports
		} else {
			s.UDPListen = ports
		}
	}
	slices.SortFunc(s.Established, func(a, b Connection) int {
		return cmp.Or(cmp.Compare(a.LocalPort, b.LocalPort), cmp.Compare(a.RemoteAddr, b.RemoteAddr))
	})

	f, err := os.Open(filepath.Join(proc, "net", "dev"))
	if err != nil {
		return s, fmt.Errorf("read net/dev: %w", err)
	}
	s.Net, err = ParseNetDev(f)
	f.Close()
	if err != nil {
		return s, fmt.Errorf("read net/dev: %w", err)
	}

	s.CPUTempC, err = cpuTemp(sys)
	if err != nil {
		return s, err
	}
	if c.StateDir != "" {
		if free, err := diskFree(c.StateDir); err == nil {
			s.DiskFreeBytes = &free
		}
	}
	return s, nil
}

func readSockets(path string) ([]Socket, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no IPv6 in this kernel
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	socks, err := ParseSockets(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	return socks, nil
}

// cpuTemp reads the first thermal zone whose type looks like the CPU
// (cpu-thermal on a Pi), else thermal_zone0.
func cpuTemp(sys string) (*float64, error) {
	zones, _ := filepath.Glob(filepath.Join(sys, "class", "thermal", "thermal_zone*"))
	if len(zones) == 0 {
		return nil, nil
	}
	slices.Sort(zones)
	pick := zones[0]
	for _, z := range zones {
		t, err := os.ReadFile(filepath.Join(z, "type"))
		if err == nil && (bytes.Contains(t, []byte("cpu")) || bytes.Contains(t, []byte("soc"))) {
			pick = z
			break
		}
	}
	b, err := os.ReadFile(filepath.Join(pick, "temp"))
	if err != nil {
		return nil, nil // some zones refuse reads when disabled
	}
	v, err := ParseMilliCelsius(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(pick), err)
	}
	return &v, nil
}
