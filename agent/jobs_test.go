package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	cloudjobs "github.com/iotagent/iotagent/cloud/jobs"
)

// waitJob polls DescribeJobExecution until the execution of id ends.
func waitJob(t *testing.T, sim *cloud.Sim, thing, id string) cloudjobs.Execution {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		e, err := sim.Jobs().DescribeJobExecution(thing, id, 0)
		if err != nil {
			t.Fatalf("DescribeJobExecution %s: %v", id, err)
		}
		if e.Status != cloudjobs.StatusQueued && e.Status != cloudjobs.StatusInProgress {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s %v after %s", id, e.Status, e.StatusDetails, waitLimit)
		}
		<-tick.C
	}
}

// TestJobsWithIotsim runs jobs through the agent: a download-file job
// whose URL is a presigned URL of iotsim's object store, and a job with an
// operation the agent does not know.
func TestJobsWithIotsim(t *testing.T) {
	sim := cloudtest.Start(t, "")
	const thing = "box-jobs"
	body := []byte("praline recipe, version 2\n")
	if _, err := sim.Objects().Put("files", "recipes/praline.txt", "text/plain", bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, sim, thing)
	dlDir := filepath.Join(t.TempDir(), "files")
	if err := os.MkdirAll(dlDir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.cfg.Jobs.DownloadDirs = []string{dlDir}
	d.start(t, agent.Options{})

	dst := filepath.Join(dlDir, "praline.txt")
	doc := fmt.Sprintf(`{"operation":"download-file","url":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/files/recipes/praline.txt}","path":%q,"sha256":"%x"}`,
		dst, sha256.Sum256(body))
	target := []string{sim.Jobs().ThingARN(thing)}
	if _, err := sim.Jobs().CreateJob(cloudjobs.CreateJobInput{JobID: "dl-1", Targets: target, Document: doc,
		PresignedURLConfig: &cloudjobs.PresignedURLConfig{ExpiresInSec: 3600}}); err != nil {
		t.Fatalf("CreateJob dl-1: %v", err)
	}
	if _, err := sim.Jobs().CreateJob(cloudjobs.CreateJobInput{JobID: "unknown-1", Targets: target, Document: `{"operation":"format-disk"}`}); err != nil {
		t.Fatalf("CreateJob unknown-1: %v", err)
	}

	if e := waitJob(t, sim, thing, "dl-1"); e.Status != cloudjobs.StatusSucceeded {
		t.Errorf("dl-1: %s %v, want SUCCEEDED", e.Status, e.StatusDetails)
	} else if e.StatusDetails["path"] != dst || e.StatusDetails["bytes"] != fmt.Sprint(len(body)) {
		t.Errorf("dl-1 statusDetails = %v", e.StatusDetails)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, body) {
		t.Errorf("downloaded file: %q, %v; want %q", got, err, body)
	}
	e := waitJob(t, sim, thing, "unknown-1")
	if e.Status != cloudjobs.StatusRejected || e.StatusDetails["reason"] != `unknown operation "format-disk"` {
		t.Errorf("unknown-1: %s %v, want REJECTED for the unknown operation", e.Status, e.StatusDetails)
	}

	// The local API shows the last job, also one rejected without a
	// handler, and the (disabled) updater.
	c := localapi.NewClient(d.cfg.LocalAPI.Socket, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var js localapi.Jobs
	if err := c.Get(ctx, localapi.SectionJobs, &js); err != nil {
		t.Fatalf("jobs section: %v", err)
	}
	if !js.Enabled || js.Last == nil || js.Last.ID != "unknown-1" || js.Last.Operation != "format-disk" || js.Last.Outcome != cloudjobs.StatusRejected ||
		js.Last.Error != `unknown operation "format-disk"` || js.Current != nil {
		t.Errorf("jobs section = %+v (last %+v)", js, js.Last)
	}
	var ota localapi.OTA
	if err := c.Get(ctx, localapi.SectionOTA, &ota); err != nil {
		t.Fatalf("ota section: %v", err)
	}
	if ota.Enabled || ota.Version != "test-1.0" {
		t.Errorf("ota section = %+v, want disabled, version test-1.0", ota)
	}
}

// TestRestartAgentJob: a restart-agent job makes Run return nil (the
// process exits 0 and systemd starts it again); the next start finishes
// the job SUCCEEDED.
func TestRestartAgentJob(t *testing.T) {
	sim := cloudtest.Start(t, "")
	const thing = "box-restart"
	d := newDevice(t, sim, thing)
	d.hw.Motion, d.hw.Contact = nil, nil
	a, err := agent.New(d.cfg, agent.Options{Hardware: d.hw, Version: "test-1.0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if _, err := sim.Jobs().CreateJob(cloudjobs.CreateJobInput{JobID: "restart-1", Targets: []string{sim.Jobs().ThingARN(thing)},
		Document: `{"operation":"restart-agent"}`}); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after restart-agent = %v, want nil (exit 0)", err)
		}
	case <-time.After(waitLimit):
		e, _ := sim.Jobs().DescribeJobExecution(thing, "restart-1", 0)
		t.Fatalf("the agent did not stop for restart-agent; execution %s %v", e.Status, e.StatusDetails)
	}
	if e, _ := sim.Jobs().DescribeJobExecution(thing, "restart-1", 0); e.Status != cloudjobs.StatusInProgress || e.StatusDetails["step"] != "restarting" {
		t.Errorf("before the restart: %s %v, want IN_PROGRESS restarting", e.Status, e.StatusDetails)
	}
	d.start(t, agent.Options{}) // what systemd does
	if e := waitJob(t, sim, thing, "restart-1"); e.Status != cloudjobs.StatusSucceeded || e.StatusDetails["step"] != "restarted" {
		t.Errorf("after the restart: %s %v, want SUCCEEDED restarted", e.Status, e.StatusDetails)
	}
}
