package defender

import (
	"bytes"
	"os"
	"testing"
)

func FuzzParseSockets(f *testing.F) {
	for _, p := range []string{"testdata/proc/net/tcp", "testdata/proc/net/tcp6", "testdata/proc/net/udp"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, err := ParseSockets(bytes.NewReader(b))
		if err == nil && len(socks) > bytes.Count(b, []byte("\n"))+1 {
			t.Fatalf("%d sockets from %d lines", len(socks), bytes.Count(b, []byte("\n"))+1)
		}
	})
}

func FuzzParseNetDev(f *testing.F) {
	b, err := os.ReadFile("testdata/proc/net/dev")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseNetDev(bytes.NewReader(b)) })
}

func FuzzDecodeReport(f *testing.F) {
	r, err := New(Options{Thing: "t", Format: FormatJSON, StateDir: f.TempDir(), Collector: fixtureCollector("proc"),
		Publish: nopPublish, Custom: func() Custom { return Custom{} }})
	if err != nil {
		f.Fatal(err)
	}
	j, err := r.Build()
	if err != nil {
		f.Fatal(err)
	}
	rep, _ := DecodeReport(FormatJSON, j)
	c, _ := rep.Encode(FormatCBOR)
	f.Add(false, j)
	f.Add(true, c)
	f.Fuzz(func(t *testing.T, isCBOR bool, b []byte) {
		format := FormatJSON
		if isCBOR {
			format = FormatCBOR
		}
		rep, err := DecodeReport(format, b)
		if err != nil {
			return
		}
		// What decodes re-encodes.
		if _, err := rep.Encode(format); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		_, _ = DecodeResponse(b)
	})
}
