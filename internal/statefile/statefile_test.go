package statefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var at = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)

func TestMoveAsideNamesAndCollisions(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	var got []string
	for i := 0; i < 3; i++ {
		os.WriteFile(p, []byte(fmt.Sprint(i)), 0o600)
		m, err := MoveAside(p, at)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, filepath.Base(m))
	}
	want := "state.json.corrupt-20261206T080000Z state.json.corrupt-20261206T080000Z-2 state.json.corrupt-20261206T080000Z-3"
	if strings.Join(got, " ") != want {
		t.Errorf("names %q, want %q", got, want)
	}
	if _, err := MoveAside(p, at); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("moving a missing file: %v", err)
	}
	if l := MovedAside(dir, 0); len(l) != 3 {
		t.Errorf("MovedAside = %q", l)
	}
}

func TestJournalBoundedAndSelfRecovering(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < MaxEvents+5; i++ {
		if err := Record(dir, Event{File: fmt.Sprint(i), At: at, Reason: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := Events(dir)
	if err != nil || len(evs) != MaxEvents || evs[0].File != "5" || evs[MaxEvents-1].File != fmt.Sprint(MaxEvents+4) {
		t.Fatalf("journal has %d events (%v), want the last %d", len(evs), err, MaxEvents)
	}
	os.WriteFile(filepath.Join(dir, JournalFile), []byte("[{"), 0o600)
	if _, err := Events(dir); !errors.Is(err, ErrUnreadable) {
		t.Fatalf("Events over a damaged journal: %v", err)
	}
	if err := Record(dir, Event{File: "next", At: at, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	evs, _ = Events(dir)
	if len(evs) != 2 || evs[0].File != filepath.Join(dir, JournalFile) || evs[0].MovedTo == "" || evs[1].File != "next" {
		t.Fatalf("after a damaged journal: %+v", evs)
	}
}

func TestReadJSON(t *testing.T) {
	type doc struct{ A string }
	for _, tc := range []struct {
		name, content string
		found         bool
		reason        string
	}{
		{"good", `{"A":"x"}`, true, ""},
		{"empty", ``, false, "empty file"},
		{"torn", `{"A":"x`, false, "not valid JSON"},
		{"invalid", `{"A":""}`, false, "no A"},
		{"wrong type", `[1]`, false, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f.json")
			os.WriteFile(p, []byte(tc.content), 0o600)
			var d doc
			found, ev, err := ReadJSON(dir, p, &d, func() error {
				if d.A == "" {
					return errors.New("no A")
				}
				return nil
			}, Then("fresh"))
			if err != nil || found != tc.found {
				t.Fatalf("found %v, %v", found, err)
			}
			if tc.found {
				if ev != nil || d.A != "x" {
					t.Fatalf("event %+v, doc %+v", ev, d)
				}
				return
			}
			if ev == nil || !strings.Contains(ev.Reason, tc.reason) || ev.Action != "fresh" || ev.File != p {
				t.Fatalf("event %+v", ev)
			}
			if b, _ := os.ReadFile(ev.MovedTo); string(b) != tc.content {
				t.Errorf("moved copy %q", b)
			}
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the damaged file is still at %s", p)
			}
		})
	}
	found, ev, err := ReadJSON(t.TempDir(), "/nonexistent/f.json", new(doc), nil, nil)
	if found || ev != nil || err != nil {
		t.Errorf("missing file: %v %v %v", found, ev, err)
	}
}

func TestLoss(t *testing.T) {
	for _, tc := range []struct {
		e    Event
		want string
	}{
		{Event{}, ""},
		{Event{Salvaged: 11, Lost: 1}, "11 messages salvaged, 1 lost"},
		{Event{LostUnknown: true}, "0 messages salvaged, an unknown number lost"},
		{Event{Salvaged: 3, Lost: 2, LostUnknown: true}, "3 messages salvaged, at least 2 lost (an unknown number more)"},
	} {
		if got := tc.e.Loss(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestParseLockLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		pid  int
		ino  uint64
		ok   bool
	}{
		{"1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF", 1234, 5678, true},
		{"2: POSIX  ADVISORY  READ 99 fd:00:12 0 EOF", 99, 12, true},
		{"3: -> FLOCK  ADVISORY  WRITE 1236 08:01:5678 0 EOF", 0, 0, false},
		{"garbage", 0, 0, false},
	} {
		pid, ino, ok := parseLockLine(tc.line)
		if pid != tc.pid || ino != tc.ino || ok != tc.ok {
			t.Errorf("%q: %d %d %v", tc.line, pid, ino, ok)
		}
	}
}

func FuzzParseLockLine(f *testing.F) {
	f.Add("1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF")
	f.Fuzz(func(t *testing.T, line string) {
		if pid, _, ok := parseLockLine(line); ok && !strings.Contains(line, fmt.Sprint(pid)) {
			t.Fatalf("pid %d not in %q", pid, line)
		}
	})
}
