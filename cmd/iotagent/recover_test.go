package main

import (
	"bufio"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// corruptInfix is corruptInfix, spelled out so that this test
// also runs (and fails) on an agent from before the recovery existed.
const corruptInfix = ".corrupt-"

// TestRunWithCorruptAgentDB runs the real iotagent binary against a state
// dir whose agent.db is random bytes and whose in-flight job record is
// torn: it starts (the old agent exited 1 with "open state: invalid
// database", naming no file, and crash-looped under Restart=always),
// logs the path and where the damaged copy went, connects, reports the
// recoveries in the shadow, and `iotagent status` and `iotagent diag`
// show them.
func TestRunWithCorruptAgentDB(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary")
	}
	bin := filepath.Join(t.TempDir(), "iotagent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "rec-box")
	stateDir := b.cfg["state_dir"].(string)
	db := filepath.Join(stateDir, "agent.db")
	inflight := filepath.Join(stateDir, "jobs", "inflight.json")
	if err := os.MkdirAll(filepath.Dir(inflight), 0o700); err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 32<<10)
	r := rand.New(rand.NewPCG(7, 7))
	for i := range garbage {
		garbage[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(db, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inflight, []byte(`{"job_id":"ota-1","execution_num`), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "run", "--config", b.cfgPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	})

	var logged []string
	deadline := time.After(60 * time.Second)
	for recovered, started := false, false; !recovered || !started; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the agent exited: %v\n%s", <-exited, strings.Join(logged, "\n"))
			}
			logged = append(logged, l)
			recovered = recovered || strings.Contains(l, "state file recovered") && strings.Contains(l, "file="+db) &&
				strings.Contains(l, "moved_to="+db+corruptInfix)
			started = started || strings.Contains(l, "agent starting")
		case <-deadline:
			t.Fatalf("no recovery logged with the path and an agent start:\n%s", strings.Join(logged, "\n"))
		}
	}
	moved, _ := filepath.Glob(db + corruptInfix + "*")
	if len(moved) != 1 {
		t.Fatalf("moved-aside copies %q, want one", moved)
	}
	if got, _ := os.ReadFile(moved[0]); string(got) != string(garbage) {
		t.Errorf("%s is not the damaged file", moved[0])
	}

	// The shadow says so.
	var rec []any
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		doc, err := sim.Shadows().Get("rec-box", "", nil)
		var d struct {
			State struct {
				Reported struct {
					Recovered []any `json:"recovered"`
				} `json:"reported"`
			} `json:"state"`
		}
		if err == nil && json.Unmarshal(doc, &d) == nil && len(d.State.Reported.Recovered) == 2 {
			rec = d.State.Reported.Recovered
			break
		}
		if time.Now().After(end) {
			t.Fatalf("reported.recovered never listed both files: %s, %v", doc, err)
		}
	}
	files := map[string]map[string]any{}
	for _, e := range rec {
		m := e.(map[string]any)
		files[m["file"].(string)] = m
	}
	if e := files[db]; e == nil || e["moved_to"] != moved[0] || e["lost_unknown"] != true || e["salvaged"] != 0.0 {
		t.Errorf("reported.recovered for agent.db: %v", e)
	}
	if e := files[inflight]; e == nil || !strings.HasPrefix(e["moved_to"].(string), inflight+corruptInfix) {
		t.Errorf("reported.recovered for inflight.json: %v", e)
	}

	out, err := exec.Command(bin, "status", "--config", b.cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "RECOVERED 2 state files") || !strings.Contains(string(out), moved[0]) ||
		!strings.Contains(string(out), "0 messages salvaged, an unknown number lost") {
		t.Errorf("status: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "diag", "--config", b.cfgPath).CombinedOutput()
	if exitCode(err) != exitFail || !strings.Contains(string(out), "FAIL  state files") || !strings.Contains(string(out), moved[0]) {
		t.Errorf("diag: exit %d, %v\n%s", exitCode(err), err, out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	for range lines {
	}
	if err := <-exited; err != nil {
		t.Errorf("agent exit: %v", err)
	}
}
