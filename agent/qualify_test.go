package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/qualify"
)

// TestAgentPassesQualify runs `iotsim qualify` (in-process, through the
// REST API as the subcommand does) against the real agent: every case
// passes, and the download job the suite creates succeeds.
func TestAgentPassesQualify(t *testing.T) {
	if testing.Short() {
		t.Skip("the qualification suite takes about 100 s")
	}
	const thing = "qualify-box"
	sim := cloudtest.Start(t, "")
	d := newDevice(t, sim, thing)
	d.cfg.MQTT.KeepAliveS = 30 // AWS's least: the keepalive case watches 45 s
	d.cfg.Alarm.Armed = true   // the publish-retry case withholds an alarm's PUBACK
	body := []byte("qualified\n")
	if _, err := sim.Objects().Put("files", "qualify.txt", "text/plain", bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	dlDir := filepath.Join(t.TempDir(), "files")
	if err := os.MkdirAll(dlDir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.cfg.Jobs.DownloadDirs = []string{dlDir}
	logs := &logTail{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log (tail):\n%s", logs)
		}
	})
	d.start(t, agent.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})

	// Motion alarms while the publish-retry case runs: it withholds the
	// PUBACK of one and waits for it again.
	progress := &caseWatch{start: "qualify: publish-retry: QoS", end: "qualify: publish-retry: ", on: make(chan bool, 2)}
	go func() {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		raising := false
		for {
			select {
			case raising = <-progress.on:
				if !raising {
					return
				}
			case <-tick.C:
				if raising {
					d.motion.Trigger(true)
					d.motion.Trigger(false)
				}
			}
		}
	}()
	doc := fmt.Sprintf(`{"operation":"download-file","url":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/files/qualify.txt}","path":%q,"sha256":"%x"}`,
		filepath.Join(dlDir, "qualify.txt"), sha256.Sum256(body))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := qualify.Run(ctx, qualify.Options{
		Client: sim.Client(), Thing: thing, Timeout: 2 * time.Minute,
		ShadowKey: "outputs.led", JobDocument: doc, Progress: progress, PublishTopic: "alarms/" + thing,
	})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	_ = rep.Table(&table)
	t.Logf("qualify report:\n%s", table.String())
	if len(rep.Results) != len(qualify.Cases) {
		t.Fatalf("%d results, want %d", len(rep.Results), len(qualify.Cases))
	}
	for _, r := range rep.Results {
		if !r.Pass {
			t.Errorf("case %s failed: %s", r.Case, r.Detail)
		}
	}
	if r := rep.Results[6]; r.Case != qualify.CaseJobs || !strings.Contains(r.Detail, " SUCCEEDED ") {
		t.Errorf("jobs case: %s %q, want the download job SUCCEEDED", r.Case, r.Detail)
	}
	if r := rep.Results[7]; r.Case != qualify.CaseKeepAlive || strings.Contains(r.Detail, " 0 PINGREQs") {
		t.Errorf("keepalive case: %s %q, want PINGREQs from the idle agent", r.Case, r.Detail)
	}
	if got, err := os.ReadFile(filepath.Join(dlDir, "qualify.txt")); err != nil || !bytes.Equal(got, body) {
		t.Errorf("downloaded file: %q, %v", got, err)
	}
	if t.Failed() {
		t.Logf("progress:\n%s", progress.b.String())
	}
}

// caseWatch is the suite's progress writer: it keeps the lines and sends
// true on on when a line starts with start, false when one starts with end.
type caseWatch struct {
	start, end string
	on         chan bool
	b          bytes.Buffer
}

func (w *caseWatch) Write(p []byte) (int, error) {
	line := string(p)
	switch {
	case strings.HasPrefix(line, w.start):
		w.on <- true
	case strings.HasPrefix(line, w.end):
		w.on <- false
	}
	return w.b.Write(p)
}
