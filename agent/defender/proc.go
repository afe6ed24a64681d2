package defender

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// ErrInvalid: bad options or input.
var ErrInvalid = errors.New("defender: invalid")

// ErrParse: a /proc or /sys file is not in the expected format.
var ErrParse = errors.New("defender: unexpected file format")

// Socket states in /proc/net/{tcp,udp}[6] (include/net/tcp_states.h).
const (
	stateEstablished = 0x01
	stateClose       = 0x07 // unconnected UDP sockets show this
	stateListen      = 0x0A
)

// Socket is one line of /proc/net/{tcp,tcp6,udp,udp6}.
type Socket struct {
	Local  netip.AddrPort
	Remote netip.AddrPort
	State  uint8
}

// maxProcLines bounds how many lines a /proc/net file may have; a Pi with
// more sockets than this is not a device to report on faithfully anyway.
const maxProcLines = 1 << 16

// ParseSockets parses /proc/net/tcp, tcp6, udp or udp6. Addresses are in
// the kernel's format: hex of the address as 32-bit words in host byte
// order (little-endian on every Raspberry Pi), a colon, the port in hex.
func ParseSockets(r io.Reader) ([]Socket, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), 4096)
	var out []Socket
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue // header: sl local_address rem_address st ...
		}
		if line > maxProcLines {
			return nil, fmt.Errorf("%w: more than %d lines", ErrParse, maxProcLines)
		}
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 || !strings.HasSuffix(f[0], ":") {
			return nil, fmt.Errorf("%w: socket line %d: %q", ErrParse, line, truncate(sc.Text(), 80))
		}
		local, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("socket line %d local address: %w", line, err)
		}
		remote, err := parseHexAddrPort(f[2])
		if err != nil {
			return nil, fmt.Errorf("socket line %d remote address: %w", line, err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("%w: socket line %d state %q", ErrParse, line, truncate(f[3], 8))
		}
		out = append(out, Socket{Local: local, Remote: remote, State: uint8(st)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParse, err)
	}
	return out, nil
}

// parseHexAddrPort parses "0100007F:1F90" (IPv4) or 32 hex digits and a
// port (IPv6).
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(p) == 0 || len(p) > 4 {
		return netip.AddrPort{}, fmt.Errorf("%w: address %q", ErrParse, truncate(s, 48))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: port %q", ErrParse, truncate(p, 8))
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("%w: address %q", ErrParse, truncate(a, 40))
	}
	// Each 32-bit word is in host (little-endian) order.
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// Counters are network counters.
type Counters struct {
	BytesIn, BytesOut, PacketsIn, PacketsOut uint64
}

// ParseNetDev parses /proc/net/dev into per-interface counters.
func ParseNetDev(r io.Reader) (map[string]Counters, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), 4096)
	out := map[string]Counters{}
	line := 0
	for sc.Scan() {
		line++
		if line <= 2 {
			continue // two header lines
		}
		if line > maxProcLines {
			return nil, fmt.Errorf("%w: more than %d lines", ErrParse, maxProcLines)
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			return nil, fmt.Errorf("%w: net/dev line %d: %q", ErrParse, line, truncate(sc.Text(), 80))
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "" || len(f) < 16 {
			return nil, fmt.Errorf("%w: net/dev line %d: %d fields", ErrParse, line, len(f))
		}
		var v [4]uint64
		for i, idx := range []int{0, 1, 8, 9} {
			n, err := strconv.ParseUint(f[idx], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: net/dev line %d field %d: %q", ErrParse, line, idx+1, truncate(f[idx], 24))
			}
			v[i] = n
		}
		out[name] = Counters{BytesIn: v[0], PacketsIn: v[1], BytesOut: v[2], PacketsOut: v[3]}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParse, err)
	}
	return out, nil
}

// ParseMilliCelsius parses a thermal zone's temp file ("48312\n") into °C.
func ParseMilliCelsius(b []byte) (float64, error) {
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: temperature %q", ErrParse, truncate(s, 16))
	}
	return float64(n) / 1000, nil
}

// delta is cur-prev, or 0 when the counter went back (wrap, reboot, an
// interface that went away).
func delta(cur, prev uint64) uint64 {
	if cur < prev {
		return 0
	}
	return cur - prev
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
