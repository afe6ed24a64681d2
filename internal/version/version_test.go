package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestStamps(t *testing.T) {
	for _, tc := range []struct {
		data string
		want []string
	}{
		{"xx" + StampKey + ":1.4.0;yy", []string{"1.4.0"}},
		{"1.4.0 bb1c651 " + StampKey + ":bb1c651;", []string{"bb1c651"}},
		{StampKey + ":1.4.0;" + StampKey + ":1.4.0;", []string{"1.4.0"}},
		{StampKey + ":1.4.0;" + StampKey + ":1.5.0;", []string{"1.4.0", "1.5.0"}},
		{StampKey + " 1.4.0;", nil},
		{StampKey + ":1.4 .0;", nil},
		{StampKey + ":" + strings.Repeat("1", 65) + ";", nil},
		{StampKey + ":1.4.0", nil},
		{"1.4.0", nil},
	} {
		if got := Stamps([]byte(tc.data)); !slices.Equal(got, tc.want) {
			t.Errorf("Stamps(%q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}

// TestStampInARealBuild builds a program that prints Version with the
// Makefile's kind of flags and finds the stamp in it, exactly once.
func TestStampInARealBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "prog")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X github.com/iotagent/iotagent/internal/version.stamp="+StampKey+":1.4.0;", "-o", bin, "./testdata/stamped")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if got := Stamps(data); !slices.Equal(got, []string{"1.4.0"}) {
		t.Errorf("Stamps(built with 1.4.0) = %q", got)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1.4.0" {
		t.Errorf("the program says %q (%v), want Version 1.4.0 from the stamp", out, err)
	}
}

func FuzzStamps(f *testing.F) {
	f.Add([]byte(StampKey + ":1.4.0;"))
	f.Add([]byte(StampKey + StampKey + ":;"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range Stamps(data) {
			if !validStamp(v) || !strings.Contains(string(data), StampKey+":"+v+";") {
				t.Fatalf("Stamps found %q in %q", v, data)
			}
		}
	})
}
