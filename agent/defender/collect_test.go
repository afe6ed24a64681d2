package defender

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func fixtureInterfaces() (map[netip.Addr]string, error) {
	return map[netip.Addr]string{
		netip.MustParseAddr("127.0.0.1"):    "lo",
		netip.MustParseAddr("192.168.1.11"): "wlan0",
	}, nil
}

func fixtureCollector(proc string) *Collector {
	return &Collector{ProcRoot: "testdata/" + proc, SysRoot: "testdata/sys", Interfaces: fixtureInterfaces}
}

func TestCollectFixture(t *testing.T) {
	got, err := fixtureCollector("proc").Collect()
	if err != nil {
		t.Fatal(err)
	}
	temp := 48.312
	want := Snapshot{
		TCPListen: []Port{{Port: 22}, {Interface: "lo", Port: 631}},
		UDPListen: []Port{{Port: 68}, {Port: 5353}},
		Established: []Connection{
			{LocalInterface: "wlan0", LocalPort: 22, RemoteAddr: "192.168.1.2:53698"},
			{LocalInterface: "wlan0", LocalPort: 8080, RemoteAddr: "192.168.1.2:57508"},
			{LocalInterface: "wlan0", LocalPort: 51708, RemoteAddr: "52.1.2.3:8883"},
		},
		Net: map[string]Counters{
			"lo":    {BytesIn: 5000, PacketsIn: 50, BytesOut: 5000, PacketsOut: 50},
			"wlan0": {BytesIn: 1048576, PacketsIn: 2000, BytesOut: 524288, PacketsOut: 1500},
			"eth0":  {},
		},
		CPUTempC: &temp,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Collect (-want +got):\n%s", diff)
	}
}

func TestParseSocketsIPv6(t *testing.T) {
	in := "header\n" +
		"   0: 000080FE00000000FF005452BB7A14FE:0016 00000000000000000000000001000000:0000 0A 0 0 0\n" +
		"   1: 00000000000000000000000001000000:0050 00000000000000000000000001000000:C000 01 0 0 0\n"
	got, err := ParseSockets(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Socket{
		{Local: netip.MustParseAddrPort("[fe80::5254:ff:fe14:7abb]:22"), Remote: netip.MustParseAddrPort("[::1]:0"), State: stateListen},
		{Local: netip.MustParseAddrPort("[::1]:80"), Remote: netip.MustParseAddrPort("[::1]:49152"), State: stateEstablished},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("ParseSockets (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		fn   func() error
	}{
		{"socket line without colon", func() error {
			_, err := ParseSockets(strings.NewReader("h\n0 0100007F:0016 00000000:0000 0A\n"))
			return err
		}},
		{"socket short line", func() error { _, err := ParseSockets(strings.NewReader("h\n0: 0100007F:0016\n")); return err }},
		{"socket bad hex", func() error {
			_, err := ParseSockets(strings.NewReader("h\n0: 01000G7F:0016 00000000:0000 0A\n"))
			return err
		}},
		{"socket odd address length", func() error {
			_, err := ParseSockets(strings.NewReader("h\n0: 0100007F00:0016 00000000:0000 0A\n"))
			return err
		}},
		{"socket bad port", func() error {
			_, err := ParseSockets(strings.NewReader("h\n0: 0100007F:10000 00000000:0000 0A\n"))
			return err
		}},
		{"socket bad state", func() error {
			_, err := ParseSockets(strings.NewReader("h\n0: 0100007F:0016 00000000:0000 ZZ\n"))
			return err
		}},
		{"netdev no colon", func() error { _, err := ParseNetDev(strings.NewReader("a\nb\neth0 1 2 3\n")); return err }},
		{"netdev few fields", func() error { _, err := ParseNetDev(strings.NewReader("a\nb\neth0: 1 2 3\n")); return err }},
		{"netdev not a number", func() error {
			_, err := ParseNetDev(strings.NewReader("a\nb\neth0: x 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"))
			return err
		}},
		{"temperature", func() error { _, err := ParseMilliCelsius([]byte("hot\n")); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestCollectMissingFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/net", 0o755); err != nil {
		t.Fatal(err)
	}
	// No sockets files, no thermal zone: only net/dev is required.
	c := &Collector{ProcRoot: dir, SysRoot: dir, Interfaces: fixtureInterfaces}
	if _, err := c.Collect(); err == nil || !strings.Contains(err.Error(), "net/dev") {
		t.Fatalf("Collect without net/dev: err = %v, want a net/dev error", err)
	}
	if err := os.WriteFile(dir+"/net/dev", []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := c.Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got.CPUTempC != nil || len(got.TCPListen) != 0 || len(got.Net) != 0 {
		t.Errorf("Collect = %+v, want an empty snapshot", got)
	}
}

// TestCollectRealProc opens a TCP listener, a connection to it and a UDP
// socket, and finds all three in what the collector reads from /proc.
func TestCollectRealProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	conn, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if c := <-accepted; c != nil {
		defer c.Close()
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()

	c := &Collector{StateDir: t.TempDir()}
	s, err := c.Collect()
	if err != nil {
		t.Fatal(err)
	}
	lnPort := ln.Addr().(*net.TCPAddr).Port
	clientPort := conn.LocalAddr().(*net.TCPAddr).Port
	udpPort := udp.LocalAddr().(*net.UDPAddr).Port
	lo := loopbackName(t)

	if !containsPort(s.TCPListen, Port{Interface: lo, Port: lnPort}) {
		t.Errorf("listening TCP ports %v lack {%s %d}", s.TCPListen, lo, lnPort)
	}
	if !containsPort(s.UDPListen, Port{Interface: lo, Port: udpPort}) {
		t.Errorf("listening UDP ports %v lack {%s %d}", s.UDPListen, lo, udpPort)
	}
	wantConns := []Connection{
		{LocalInterface: lo, LocalPort: clientPort, RemoteAddr: ln.Addr().String()},
		{LocalInterface: lo, LocalPort: lnPort, RemoteAddr: conn.LocalAddr().String()},
	}
	for _, w := range wantConns {
		found := false
		for _, g := range s.Established {
			found = found || g == w
		}
		if !found {
			t.Errorf("established connections lack %+v", w)
		}
	}
	if _, ok := s.Net[lo]; !ok {
		t.Errorf("net counters %v lack %s", s.Net, lo)
	}
	if s.DiskFreeBytes == nil || *s.DiskFreeBytes == 0 {
		t.Errorf("DiskFreeBytes = %v, want the free space of the temp dir", s.DiskFreeBytes)
	}
}

func loopbackName(t *testing.T) string {
	m, err := InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	name, ok := m[netip.MustParseAddr("127.0.0.1")]
	if !ok {
		t.Skip("no interface holds 127.0.0.1")
	}
	return name
}

func containsPort(ps []Port, p Port) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
