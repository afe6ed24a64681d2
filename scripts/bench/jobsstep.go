package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/registry"
)

// benchGroup is the thing group every jobs-step device belongs to.
const benchGroup = "bench-fleet"

// restCall sends one REST request to iotsim's control plane, signed with
// endpoint.json's credentials, and decodes a 200 answer into out (nil:
// discarded).
func restCall(ctx context.Context, ep cloud.Endpoint, method, path string, body, out any) error {
	return ep.Client().Call(ctx, "iot", method, path, nil, body, out)
}

// jobTopics are what one device subscribes to: the head of its queue and
// the answers to start-next and to updates.
func jobTopics(thing string) []string {
	p := "$aws/things/" + thing + "/jobs/"
	return []string{p + "notify-next", p + "start-next/accepted", p + "start-next/rejected", p + "+/update/accepted", p + "+/update/rejected"}
}

// awaitNotifyNext waits for a notify-next naming jobID.
func awaitNotifyNext(c *mclient, thing, jobID string, deadline time.Time) error {
	for {
		_, payload, err := c.await(deadline, func(t string) bool { return t == "$aws/things/"+thing+"/jobs/notify-next" })
		if err != nil {
			return err
		}
		var n struct {
			Execution *struct {
				JobID string `json:"jobId"`
			} `json:"execution"`
		}
		if json.Unmarshal(payload, &n) == nil && n.Execution != nil && n.Execution.JobID == jobID {
			return nil
		}
	}
}

// runExecution is the device side of one job: start-next, then update to
// SUCCEEDED, each waiting for its accepted answer.
func runExecution(c *mclient, thing, jobID string, deadline time.Time) error {
	p := "$aws/things/" + thing + "/jobs/"
	if err := c.publish(p+"start-next", []byte(`{"clientToken":"bench-`+thing+`"}`), true); err != nil {
		return err
	}
	topic, payload, err := c.await(deadline, func(t string) bool { return strings.HasPrefix(t, p+"start-next/") })
	if err != nil {
		return fmt.Errorf("start-next: %w", err)
	}
	var started struct {
		Execution *struct {
			JobID         string `json:"jobId"`
			VersionNumber int64  `json:"versionNumber"`
		} `json:"execution"`
	}
	if strings.HasSuffix(topic, "/rejected") || json.Unmarshal(payload, &started) != nil || started.Execution == nil || started.Execution.JobID != jobID {
		return fmt.Errorf("start-next: %w or not %s: %s", errRejected, jobID, payload)
	}
	up := fmt.Sprintf(`{"status":"SUCCEEDED","expectedVersion":%d,"clientToken":"bench-%s"}`, started.Execution.VersionNumber, thing)
	if err := c.publish(p+jobID+"/update", []byte(up), true); err != nil {
		return err
	}
	topic, payload, err = c.await(deadline, func(t string) bool { return strings.HasPrefix(t, p+jobID+"/update/") })
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	if strings.HasSuffix(topic, "/rejected") {
		return fmt.Errorf("update: %w: %s", errRejected, payload)
	}
	return nil
}

// jobsDispatch: N devices connected to the real iotsim, each subscribed to
// its jobs topics; a job for their thing group created over REST; the
// rate of notify-next deliveries, then of executions taken to SUCCEEDED.
func jobsDispatch(ctx context.Context, o *opts, tmp string, add func(Metric)) error {
	dir := filepath.Join(tmp, "jobs-iotsim")
	names := make([]string, o.jobDevices)
	for i := range names {
		names[i] = fmt.Sprintf("job-%05d", i)
	}
	devs, caPEM, _, err := issueThings(ctx, dir, names, 4, o.issueLimit,
		func(sim *cloud.Sim) error { _, err := sim.Registry().CreateThingGroup(benchGroup, nil); return err },
		func(reg *registry.Registry, name string) error { return reg.AddThingToThingGroup(benchGroup, name) })
	if err != nil {
		return err
	}
	sp, err := startSim(ctx, o.bin, dir, filepath.Join(tmp, "iotsim-jobs.log"))
	if err != nil {
		return err
	}
	defer sp.stop()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	connected, _, cerr := connectAll(ctx, devs, sp.ep.MQTTEndpoint, pool, o.connectLimit)
	defer func() {
		for _, d := range devs {
			if d.c != nil {
				d.c.close()
			}
		}
	}()
	if connected != len(devs) {
		return fmt.Errorf("connected %d of %d devices: %v", connected, len(devs), cerr)
	}
	// Subscribe, 32 at a time.
	if err := forEach(devs, 32, func(d *device) error { return d.c.subscribe(30*time.Second, jobTopics(d.name)...) }); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	groupARN := "arn:aws:iot:" + cloud.DefaultRegion + ":" + cloud.DefaultAccount + ":thinggroup/" + benchGroup
	var dispatch, complete, notifyP50, notifyP99 []float64
	for run := range o.jobRuns {
		jobID := fmt.Sprintf("bench-job-%d-%d", run, time.Now().UnixNano())
		var (
			mu  sync.Mutex
			lat []float64
			wg  sync.WaitGroup
		)
		errs := make(chan error, len(devs))
		// Each device waits for its notify-next; the job is created once
		// every device is waiting.
		ready := make(chan struct{})
		var t0 time.Time
		for _, d := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-ready
				if err := awaitNotifyNext(d.c, d.name, jobID, time.Now().Add(60*time.Second)); err != nil {
					errs <- fmt.Errorf("%s: notify-next: %w", d.name, err)
					return
				}
				at := time.Since(t0)
				mu.Lock()
				lat = append(lat, ms(at))
				mu.Unlock()
			}()
		}
		doc := `{"operation":"bench-noop","run":` + fmt.Sprint(run) + `}`
		t0 = time.Now()
		close(ready)
		if err := restCall(ctx, sp.ep, http.MethodPut, "/jobs/"+jobID,
			map[string]any{"targets": []string{groupARN}, "document": doc, "targetSelection": "SNAPSHOT"}, nil); err != nil {
			return fmt.Errorf("CreateJob: %w", err)
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		last := percentile(lat, 100)
		dispatch = append(dispatch, float64(len(lat))/(last/1000))
		notifyP50 = append(notifyP50, percentile(lat, 50))
		notifyP99 = append(notifyP99, percentile(lat, 99))

		// Every device takes its execution to SUCCEEDED.
		t1 := time.Now()
		if err := forEach(devs, len(devs), func(d *device) error {
			return runExecution(d.c, d.name, jobID, time.Now().Add(60*time.Second))
		}); err != nil {
			return err
		}
		took := time.Since(t1)
		complete = append(complete, float64(len(devs))/took.Seconds())
		var desc struct {
			Job struct {
				Status  string `json:"status"`
				Details struct {
					Succeeded int `json:"numberOfSucceededThings"`
				} `json:"jobProcessDetails"`
			} `json:"job"`
		}
		if err := restCall(ctx, sp.ep, http.MethodGet, "/jobs/"+jobID, nil, &desc); err != nil {
			return fmt.Errorf("DescribeJob: %w", err)
		}
		if desc.Job.Details.Succeeded != len(devs) {
			return fmt.Errorf("DescribeJob %s: %d succeeded, want %d (status %s)", jobID, desc.Job.Details.Succeeded, len(devs), desc.Job.Status)
		}
	}
	note := fmt.Sprintf("%d devices (mutual TLS, hand-made MQTT), each subscribed to notify-next; %d jobs, one after another, each CreateJob over REST for their thing group; "+
		"rate = devices / (CreateJob sent → last notify-next received); bin/iotsim serve, data dir on disk", len(devs), o.jobRuns)
	add(Metric{Step: "jobs", Name: "jobs dispatched per second (notify-next delivered)", Unit: "/s", Samples: dispatch, Note: note})
	add(Metric{Step: "jobs", Name: "CreateJob → notify-next p50", Unit: "ms", Samples: notifyP50})
	add(Metric{Step: "jobs", Name: "CreateJob → notify-next p99", Unit: "ms", Samples: notifyP99})
	add(Metric{Step: "jobs", Name: "executions completed per second", Unit: "/s", Samples: complete,
		Note: "every device at once: start-next, then update SUCCEEDED (expectedVersion), each waiting for its accepted answer; DescribeJob then counts every execution SUCCEEDED"})
	return nil
}

// forEach runs f for every device, at most n at a time, and returns the
// first error.
func forEach(devs []*device, n int, f func(*device) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	sem := make(chan struct{}, max(n, 1))
	for _, d := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(d); err != nil {
				once.Do(func() { first = fmt.Errorf("%s: %w", d.name, err) })
			}
		}()
	}
	wg.Wait()
	return first
}
