package ota

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

var killRuns = flag.Int("ota.killruns", 50, "updates interrupted by kill -9 in TestKillNine")

const helperEnv = "OTA_TEST_LIFE"

// TestHelperLife is not a test: it is one start of the simulated agent,
// run in a child process by TestKillNine. It prints each persisted state.
func TestHelperLife(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	var h struct {
		Dir, Pub string
		Rel      Release
	}
	if err := json.Unmarshal([]byte(spec), &h); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	testHookState = func(s State) error { fmt.Println("state", s); return nil }
	f := &fixture{dir: h.Dir, pub: h.Pub}
	fmt.Println("start")
	r, err := life(context.Background(), f, "job-1", h.Rel, healthy)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	fmt.Println("result", r)
	os.Exit(0)
}

// TestKillNine kills the agent with SIGKILL at random points of whole
// updates (download, verify, stage, switch, trial, commit) and asserts
// that every update ends with a working slot, committed, or rolled back
// when the new version was killed at each of its trial starts; the
// supervisor restarts the agent each time.
func TestKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	runs := *killRuns
	var mu sync.Mutex
	killedAfter := map[string]int{}
	rolledBack := 0
	for i := range runs {
		f := newFixture(t, 192<<10)
		spec, _ := json.Marshal(map[string]any{"Dir": f.dir, "Pub": f.pub, "Rel": f.rel})
		done := false
		for life := 0; life < 40 && !done; life++ {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLife$")
			// GORACE: a race-enabled child otherwise sleeps 1 s at exit.
			cmd.Env = append(os.Environ(), helperEnv+"="+string(spec), "GORACE=atexit_sleep_ms=0")
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			kill := func() { _ = cmd.Process.Kill() }
			mode := rand.IntN(3) // 0: no kill; 1: after the nth line; 2: after a random time
			nth := rand.IntN(6)
			if life >= 30 {
				mode = 0 // let it finish eventually
			}
			var timer *time.Timer
			sc := bufio.NewScanner(out)
			last, lines := "", 0
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "result done") {
					done = true
				}
				if strings.HasPrefix(line, "error") {
					t.Errorf("run %d life %d: %s", i, life, line)
				}
				last = line
				if mode == 2 && line == "start" {
					timer = time.AfterFunc(time.Duration(rand.IntN(20000))*time.Microsecond, kill)
				}
				if mode == 1 && lines == nth {
					kill()
				}
				lines++
			}
			if timer != nil {
				timer.Stop()
			}
			werr := cmd.Wait()
			if werr != nil && strings.Contains(werr.Error(), "killed") {
				mu.Lock()
				killedAfter[last]++
				mu.Unlock()
				done = false
			}
		}
		if !done {
			t.Fatalf("run %d: the update did not finish", i)
		}
		if _, err := PreStart(f.dir, time.Now()); err != nil {
			t.Fatal(err)
		}
		// Killed at start MaxStarts times in a row while on trial, the new
		// version is rolled back, as it must be: a terminal state too.
		if st, err := NewLayout(f.dir).load(); err == nil && st.State == RolledBack && strings.Contains(st.Reason, "did not commit in") {
			f.check(t, RolledBack, "1.0.0")
			rolledBack++
		} else {
			f.check(t, Committed, "2.0.0")
		}
		if t.Failed() {
			t.Fatalf("run %d failed; kills so far after: %v", i, killedAfter)
		}
	}
	t.Logf("%d updates, %d rolled back after killed trials; kills after each last line: %v", runs, rolledBack, killedAfter)
	if rolledBack == runs {
		t.Errorf("every update was rolled back")
	}
	if runs >= 50 && len(killedAfter) < 4 {
		t.Errorf("kills landed after only %d distinct points: %v", len(killedAfter), killedAfter)
	}
}
