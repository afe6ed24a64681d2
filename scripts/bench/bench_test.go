package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Summary
	}{
		{nil, Summary{}},
		{[]float64{3}, Summary{N: 1, Median: 3, Min: 3, Max: 3}},
		{[]float64{5, 1, 3}, Summary{N: 3, Median: 3, Min: 1, Max: 5}},
		{[]float64{4, 1, 2, 10}, Summary{N: 4, Median: 3, Min: 1, Max: 10}},
	} {
		if diff := cmp.Diff(tc.want, summarize(tc.in)); diff != "" {
			t.Errorf("summarize(%v) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestPercentile(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100..1, unsorted
	}
	for _, tc := range []struct {
		p    float64
		want float64
	}{{50, 50}, {99, 99}, {100, 100}, {1, 1}, {0.1, 1}} {
		if got := percentile(xs, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("percentile of nothing = %v, want NaN", got)
	}
}

const benchOut = `goos: linux
goarch: amd64
pkg: github.com/iotagent/iotagent/agent/outbox
cpu: AMD EPYC
BenchmarkAppend-2   	    1000	   1200000 ns/op	    2048 B/op	      30 allocs/op
BenchmarkAppend-2   	    1000	   1000000 ns/op	    2040 B/op	      30 allocs/op
BenchmarkDrain-2    	   50000	     20000 ns/op	    5000 msgs/s
PASS
ok  	github.com/iotagent/iotagent/agent/outbox	3.1s
pkg: github.com/iotagent/iotagent/cloud/shadow
BenchmarkMerge-2    	  500000	      2100 ns/op	     900 B/op	      12 allocs/op
BenchmarkBroken-2   	  garbage
ok  	github.com/iotagent/iotagent/cloud/shadow	1.0s
`

func TestParseGoBench(t *testing.T) {
	got, err := parseGoBench(strings.NewReader(benchOut))
	if err != nil {
		t.Fatal(err)
	}
	want := []GoBench{
		{Pkg: "agent/outbox", Name: "Append", NsPerOp: []float64{1.2e6, 1e6}, BytesPerOp: []float64{2048, 2040}, AllocsPerOp: []float64{30, 30}},
		{Pkg: "agent/outbox", Name: "Drain", NsPerOp: []float64{20000}, Other: map[string][]float64{"msgs/s": {5000}}},
		{Pkg: "cloud/shadow", Name: "Merge", NsPerOp: []float64{2100}, BytesPerOp: []float64{900}, AllocsPerOp: []float64{12}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRatios(t *testing.T) {
	gb := []GoBench{
		{Pkg: "cloud", Name: "PublishLatencyRules/rules=0", NsPerOp: []float64{100, 200, 300}},
		{Pkg: "cloud", Name: "PublishLatencyRules/rules=10", NsPerOp: []float64{250, 500, 900}},
	}
	got := ratios(gb)
	if len(got) != 1 || !strings.Contains(got[0], "2.50×") {
		t.Errorf("ratios = %q, want one line with 2.50×", got)
	}
	if got := ratios(gb[:1]); len(got) != 0 {
		t.Errorf("ratios without the numerator = %q, want none", got)
	}
}

func TestParseSmapsRollup(t *testing.T) {
	in := "00400000-7ffd1000 ---p 00000000 00:00 0                          [rollup]\n" +
		"Rss:                9412 kB\nPss:                9100 kB\nPss_Anon:           4000 kB\n"
	got, err := parseSmapsRollup([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Mem{RSS: 9412, PSS: 9100}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := parseSmapsRollup([]byte("Rss: 1 kB\n")); !errors.Is(err, errNoField) {
		t.Errorf("no Pss: err = %v, want errNoField", err)
	}
}

func TestParseStatusField(t *testing.T) {
	in := []byte("Name:\tiotagent\nThreads:\t7\nVmHWM:\t   10240 kB\n")
	for _, tc := range []struct {
		field string
		want  int64
	}{{"Threads", 7}, {"VmHWM", 10240}} {
		got, err := parseStatusField(in, tc.field)
		if err != nil || got != tc.want {
			t.Errorf("%s = %d, %v; want %d", tc.field, got, err, tc.want)
		}
	}
	if _, err := parseStatusField(in, "VmRSS"); !errors.Is(err, errNoField) {
		t.Errorf("missing field: err = %v, want errNoField", err)
	}
}

func TestCountGoroutines(t *testing.T) {
	dump := `SIGQUIT: quit
PC=0x47a1c1 m=0 sigcode=0

goroutine 0 gp=0x5471c0 m=0 mp=0x547f80 [idle]:
runtime.futex(...)

goroutine 1 gp=0xc000002380 m=nil [select]:
main.main()

goroutine 2 gp=0xc000002a80 m=nil [force gc (idle)]:
runtime.gopark(...)
created by runtime.init.7 in goroutine 1

goroutine 7 gp=0xc000003180 m=nil [chan receive]:
github.com/iotagent/iotagent/agent.(*Agent).Run.func1()
created by golang.org/x/sync/errgroup.(*Group).Go in goroutine 1

goroutine 9 [IO wait]:
internal/poll.runtime_pollWait(...)
created by github.com/eclipse/paho.mqtt.golang.(*client).startCommsWorkers in goroutine 8
`
	if got := countGoroutines([]byte(dump)); got != 3 {
		t.Errorf("countGoroutines = %d, want 3 (1, 7 and 9)", got)
	}
}

func TestReplaceGenerated(t *testing.T) {
	doc := "# B\n\nintro\n" + beginMarker + "\nold\nold\n" + endMarker + "\n\nafter\n"
	got, err := replaceGenerated([]byte(doc), "new table")
	if err != nil {
		t.Fatal(err)
	}
	want := "# B\n\nintro\n" + beginMarker + "\nnew table\n" + endMarker + "\n\nafter\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"no markers", beginMarker + " only", endMarker + beginMarker} {
		if _, err := replaceGenerated([]byte(bad), "x"); !errors.Is(err, errNoMarkers) {
			t.Errorf("replaceGenerated(%q) err = %v, want errNoMarkers", bad, err)
		}
	}
}

func TestMarkdown(t *testing.T) {
	r := &Report{Command: "make bench", Machine: []string{"cores: 2"},
		Metrics: []Metric{{Step: "idle", Name: "agent RSS", Unit: "MiB", Samples: []float64{9, 8, 10}, Target: "≤ 9 MB", Note: "a|b"}},
		NotYet:  []NotYet{{Name: "OTA", Reason: "no OTA yet"}}}
	md := r.Markdown()
	for _, want := range []string{"| idle | agent RSS | 9.00 | 8.00 – 10.00 | 3 | MiB | ≤ 9 MB | a\\|b |", "- OTA: not yet measurable: no OTA yet"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// The hand-made packets must be what a real MQTT implementation reads.
func TestPacketsDecodeWithMochi(t *testing.T) {
	decode := func(b []byte) packets.Packet {
		t.Helper()
		r := bufio.NewReader(bytes.NewReader(b))
		typ, flags, body, err := readPacket(r)
		if err != nil {
			t.Fatal(err)
		}
		pk := packets.Packet{ProtocolVersion: 4, FixedHeader: packets.FixedHeader{}}
		if err := pk.FixedHeader.Decode(typ<<4 | flags); err != nil {
			t.Fatal(err)
		}
		pk.FixedHeader.Remaining = len(body)
		switch typ {
		case pktConnect:
			err = pk.ConnectDecode(body)
		case pktPublish:
			err = pk.PublishDecode(body)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadByte(); err != io.EOF {
			t.Fatalf("trailing bytes after the packet")
		}
		return pk
	}
	c := decode(connectPacket("dev-00001", 1200))
	if c.Connect.ClientIdentifier != "dev-00001" || c.Connect.Keepalive != 1200 || !c.Connect.Clean || c.ProtocolVersion != 4 {
		t.Errorf("CONNECT decoded as %+v", c.Connect)
	}
	payload := bytes.Repeat([]byte("x"), 300) // a two-byte remaining length
	p := decode(publishPacket("$aws/things/d/shadow/update", 513, payload))
	if p.TopicName != "$aws/things/d/shadow/update" || p.PacketID != 513 || p.FixedHeader.Qos != 1 || !bytes.Equal(p.Payload, payload) {
		t.Errorf("PUBLISH decoded as topic %q id %d qos %d, %d bytes", p.TopicName, p.PacketID, p.FixedHeader.Qos, len(p.Payload))
	}
}

func TestReadPacketErrors(t *testing.T) {
	for name, in := range map[string][]byte{
		"five length bytes": {0x30, 0xff, 0xff, 0xff, 0xff, 0x01},
		"too big":           {0x30, 0xff, 0xff, 0x7f},
		"short body":        {0x40, 0x02, 0x00},
		"empty":             {},
	} {
		if _, _, _, err := readPacket(bufio.NewReader(bytes.NewReader(in))); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := connackCode(pktPuback, []byte{0, 0}); !errors.Is(err, errMalformed) {
		t.Errorf("connackCode(PUBACK) err = %v", err)
	}
	if _, err := pubackID(pktPuback, []byte{1}); !errors.Is(err, errMalformed) {
		t.Errorf("pubackID(short) err = %v", err)
	}
}

// The load generator against a real iotsim: mutual TLS, CONNECT, shadow
// updates acknowledged after the shadow service stored them.
func TestLoadGeneratorAgainstIotsim(t *testing.T) {
	sim := cloudtest.Start(t, "")
	var devs []*device
	for _, name := range []string{"dev-00000", "dev-00001"} {
		cert, key, err := cloud.CreateThing(sim.Registry(), sim.CA(), name)
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, &device{name: name, cert: cert, key: key})
	}
	pool := x509.NewCertPool()
	pool.AddCert(sim.CA().Cert)
	n, _, err := connectAll(context.Background(), devs, sim.MQTTAddrs()[0], pool, 20*time.Second)
	if err != nil || n != 2 {
		t.Fatalf("connected %d of 2: %v", n, err)
	}
	t.Cleanup(func() {
		for _, d := range devs {
			d.c.conn.Close()
		}
	})
	rates, err := shadowUpdates(context.Background(), devs, 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(rates) != 5 {
		t.Fatalf("got %d rate samples, want 5", len(rates))
	}
	doc, err := sim.Shadows().Get("dev-00001", "", nil)
	if err != nil {
		t.Fatalf("no shadow stored for dev-00001: %v", err)
	}
	if !bytes.Contains(doc, []byte(`"seq"`)) {
		t.Errorf("shadow lacks the reported seq: %s", doc)
	}

	// A certificate that is not registered gets no CONNACK.
	cert, key, err := sim.CA().NewKeysAndCertificate("stranger")
	if err != nil {
		t.Fatal(err)
	}
	stranger := &device{name: "dev-00000", cert: cert, key: key}
	if err := stranger.connect(sim.MQTTAddrs()[0], pool); err == nil {
		stranger.c.conn.Close()
		t.Error("an unregistered certificate connected")
	}
}

func FuzzReadPacket(f *testing.F) {
	f.Add(connectPacket("a", 60))
	f.Add(publishPacket("t/1", 7, []byte("{}")))
	f.Add([]byte{0x20, 0x02, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, _, body, err := readPacket(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if len(body) > maxPacket || typ > 15 {
			t.Fatalf("accepted type %d with %d bytes", typ, len(body))
		}
		_, _ = connackCode(typ, body)
		_, _ = pubackID(typ, body)
		_, _, _, _ = parsePublish(0x02, body)
		_, _ = subackCodes(typ, body, 1)
	})
}

func FuzzParseGoBench(f *testing.F) {
	f.Add(benchOut)
	f.Add("BenchmarkX-2 1 NaN ns/op\n")
	f.Fuzz(func(t *testing.T, s string) {
		got, _ := parseGoBench(strings.NewReader(s))
		for _, g := range got {
			if len(g.NsPerOp) == 0 {
				t.Fatalf("benchmark %s without ns/op", g.Name)
			}
		}
	})
}

func FuzzParseSmapsRollup(f *testing.F) {
	f.Add([]byte("Rss: 10 kB\nPss: 9 kB\n"))
	f.Add([]byte("Rss: -1 kB\nPss: x kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseSmapsRollup(b)
		if err == nil && (m.RSS < 0 || m.PSS < 0) {
			t.Fatalf("negative memory %+v", m)
		}
		_, _ = parseStatusField(b, "Threads")
		_ = countGoroutines(b)
	})
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		make bool
		want string
	}{
		{[]string{"--bin", "bin", "--dist", "dist", "--out", "BENCHMARKS.md"}, true, "make bench"},
		{[]string{"--bin", "bin", "--out=BENCHMARKS.md", "--quick"}, true, `make bench BENCHFLAGS="--quick"`},
		{[]string{"--steps", "idle"}, false, "go run ./scripts/bench --steps idle"},
		{nil, false, "go run ./scripts/bench"},
	} {
		if got := commandLine(tc.args, tc.make); got != tc.want {
			t.Errorf("commandLine(%q, %v) = %q, want %q", tc.args, tc.make, got, tc.want)
		}
	}
}
