package jobs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/agent/jobs"
	"github.com/iotagent/iotagent/agent/transport"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	cloudjobs "github.com/iotagent/iotagent/cloud/jobs"
)

const (
	iotsimThing = "box-j"
	iotsimWait  = 10 * time.Second
	iotsimTick  = 20 * time.Millisecond
)

// iotsimDevice is the jobs runner connected to a real iotsim as a thing
// over mutual-TLS MQTT.
type iotsimDevice struct {
	sim *cloud.Sim
	svc *cloudjobs.Service
	arn string
}

func startIotsimDevice(t *testing.T, handlers map[string]jobs.Handler) *iotsimDevice {
	t.Helper()
	sim := cloudtest.Start(t, "")
	certPEM, keyPEM, err := sim.CreateThing(iotsimThing)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	idDir := filepath.Join(dir, "identity")
	if err := cloud.WriteCredentials(idDir, "device", certPEM, keyPEM, sim.CA().CertPEM); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(sim.CA().CertPEM) {
		t.Fatal("iotsim CA: no certificate in PEM")
	}

	var r *jobs.Runner
	tc, err := transport.New(transport.Options{
		Broker:      sim.MQTTAddrs()[0],
		ServerName:  "127.0.0.1",
		RootCAs:     roots,
		Certificate: pair,
		ClientID:    iotsimThing,
		BackoffMax:  time.Second,
		// As the agent does: look for work after every (re)connect, once
		// the subscriptions are back.
		OnConnect: func(context.Context) { r.Kick() },
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err = jobs.New(jobs.Options{
		Thing:          iotsimThing,
		Transport:      tc,
		StateDir:       filepath.Join(dir, "state"),
		Handlers:       handlers,
		RequestTimeout: 2 * time.Second,
		RetryAfter:     200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	runDone, tDone := make(chan error, 1), make(chan error, 1)
	go func() { runDone <- r.Run(ctx) }()
	go func() { tDone <- tc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for name, ch := range map[string]chan error{"jobs runner": runDone, "transport": tDone} {
			select {
			case err := <-ch:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("%s Run = %v", name, err)
				}
			case <-time.After(iotsimWait):
				t.Errorf("%s Run did not return", name)
			}
		}
	})

	wctx, wcancel := context.WithTimeout(ctx, iotsimWait)
	defer wcancel()
	if err := tc.WaitSubscribed(wctx); err != nil {
		t.Fatalf("connect to iotsim as %s: %v (last error: %s)", iotsimThing, err, tc.Stats().LastError)
	}
	return &iotsimDevice{sim: sim, svc: sim.Jobs(), arn: sim.Jobs().ThingARN(iotsimThing)}
}

func (d *iotsimDevice) createJob(t *testing.T, id, doc string) {
	t.Helper()
	if _, err := d.svc.CreateJob(cloudjobs.CreateJobInput{JobID: id, Targets: []string{d.arn}, Document: doc}); err != nil {
		t.Fatalf("CreateJob %s: %v", id, err)
	}
}

// waitTerminal polls DescribeJobExecution until the execution of id
// reaches a terminal status.
func (d *iotsimDevice) waitTerminal(t *testing.T, id string) cloudjobs.Execution {
	t.Helper()
	deadline := time.Now().Add(iotsimWait)
	tick := time.NewTicker(iotsimTick)
	defer tick.Stop()
	for {
		e, err := d.svc.DescribeJobExecution(iotsimThing, id, 0)
		if err != nil {
			t.Fatalf("DescribeJobExecution %s: %v", id, err)
		}
		if e.Status != cloudjobs.StatusQueued && e.Status != cloudjobs.StatusInProgress {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s %v after %s", id, e.Status, e.StatusDetails, iotsimWait)
		}
		<-tick.C
	}
}

// TestIotsimJobs runs the jobs runner against iotsim's Jobs service over
// real mutual-TLS MQTT.
func TestIotsimJobs(t *testing.T) {
	started, why := make(chan jobs.Job, 1), make(chan error, 1)
	d := startIotsimDevice(t, map[string]jobs.Handler{
		"echo": jobs.HandlerFunc(func(ctx context.Context, job jobs.Job, p *jobs.Progress) (map[string]string, error) {
			if err := p.Update(ctx, map[string]string{"step": "half"}); err != nil {
				return nil, err
			}
			return map[string]string{"said": "hello", "job": job.ID}, nil
		}),
		"fail": jobs.HandlerFunc(func(context.Context, jobs.Job, *jobs.Progress) (map[string]string, error) {
			return map[string]string{"stage": "write"}, errors.New("disk full")
		}),
		"block": jobs.HandlerFunc(func(ctx context.Context, job jobs.Job, _ *jobs.Progress) (map[string]string, error) {
			started <- job
			<-ctx.Done()
			why <- context.Cause(ctx)
			return nil, ctx.Err()
		}),
	})

	d.createJob(t, "ok-1", `{"operation":"echo"}`)
	d.createJob(t, "unknown-1", `{"operation":"format-disk"}`)
	d.createJob(t, "fails-1", `{"operation":"fail"}`)
	for _, tc := range []struct {
		id, status string
		details    map[string]string
	}{
		{"ok-1", cloudjobs.StatusSucceeded, map[string]string{"said": "hello", "job": "ok-1"}},
		{"unknown-1", cloudjobs.StatusRejected, map[string]string{"reason": `unknown operation "format-disk"`}},
		{"fails-1", cloudjobs.StatusFailed, map[string]string{"reason": "disk full", "stage": "write"}},
	} {
		e := d.waitTerminal(t, tc.id)
		if e.Status != tc.status {
			t.Errorf("%s: status %s %v, want %s", tc.id, e.Status, e.StatusDetails, tc.status)
		}
		if diff := cmp.Diff(tc.details, e.StatusDetails); diff != "" {
			t.Errorf("%s: statusDetails (-want +got):\n%s", tc.id, diff)
		}
	}

	// Cancel (forced: the execution is IN_PROGRESS) while the handler runs.
	d.createJob(t, "long-1", `{"operation":"block"}`)
	select {
	case job := <-started:
		if job.ID != "long-1" || job.Operation != "block" {
			t.Errorf("handler got %+v", job)
		}
	case <-time.After(iotsimWait):
		e, _ := d.svc.DescribeJobExecution(iotsimThing, "long-1", 0)
		t.Fatalf("block handler did not start; execution %s %v", e.Status, e.StatusDetails)
	}
	if e, err := d.svc.DescribeJobExecution(iotsimThing, "long-1", 0); err != nil || e.Status != cloudjobs.StatusInProgress {
		t.Fatalf("running job: %s %v, %v; want IN_PROGRESS", e.Status, e.StatusDetails, err)
	}
	if _, err := d.svc.CancelJob("long-1", true, "TEST", "canceled by the test"); err != nil {
		t.Fatalf("CancelJob: %v", err)
	}
	select {
	case err := <-why:
		if !errors.Is(err, jobs.ErrCanceled) {
			t.Errorf("handler's ctx cause = %v, want ErrCanceled", err)
		}
	case <-time.After(iotsimWait):
		t.Fatal("the handler's ctx did not end after CancelJob")
	}
	if e := d.waitTerminal(t, "long-1"); e.Status != cloudjobs.StatusCanceled || !e.ForceCanceled {
		t.Errorf("canceled job: %s (forceCanceled %v) %v, want CANCELED", e.Status, e.ForceCanceled, e.StatusDetails)
	}

	// The runner goes on with the next job after the cancel.
	d.createJob(t, "ok-2", `{"operation":"echo"}`)
	if e := d.waitTerminal(t, "ok-2"); e.Status != cloudjobs.StatusSucceeded {
		t.Errorf("job after the cancel: %s %v, want SUCCEEDED", e.Status, e.StatusDetails)
	}
}
