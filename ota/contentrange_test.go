package ota

import "testing"

func TestContentRange(t *testing.T) {
	for _, tc := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/1", 0, 1, true},
		{"bytes 5-9/*", 5, -1, true},
		{"bytes */200", 0, 0, false},
		{"bytes 5-9", 0, 0, false},
		{"items 5-9/10", 0, 0, false},
		{"bytes x-9/10", 0, 0, false},
		{"bytes 5-9/ten", 0, 0, false},
		{"", 0, 0, false},
	} {
		start, total, ok := contentRange(tc.in)
		if start != tc.start || total != tc.total || ok != tc.ok {
			t.Errorf("contentRange(%q) = %d, %d, %v; want %d, %d, %v", tc.in, start, total, ok, tc.start, tc.total, tc.ok)
		}
	}
}

func FuzzContentRange(f *testing.F) {
	f.Add("bytes 100-199/200")
	f.Add("bytes 5-9/*")
	f.Fuzz(func(t *testing.T, s string) {
		start, total, ok := contentRange(s)
		if !ok && (start != 0 || total != 0) {
			t.Errorf("%q: not ok but %d, %d", s, start, total)
		}
		if ok && (start < 0 || total < -1) {
			t.Errorf("%q: start %d, total %d", s, start, total)
		}
	})
}
