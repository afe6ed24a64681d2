package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// flaky is the fake service behind a connection that loses the handler's
// first progress update in the way given: the update's PUBLISH fails (no
// PUBACK, the connection dropped) or the service throttles it.
type flaky struct {
	*fakeService
	mode  string // "lost" or "throttled"
	fired atomic.Bool
}

func (f *flaky) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	if strings.HasSuffix(topic, "/update") && strings.Contains(string(payload), `"step":"half"`) && f.fired.CompareAndSwap(false, true) {
		if f.mode == "lost" {
			return errors.New("publish " + topic + ": connection closed before PUBACK: transport: not connected")
		}
		var req updateRequest
		_ = json.Unmarshal(payload, &req)
		f.mu.Lock()
		send := f.deliverLocked(topic+"/rejected", map[string]any{"code": "RequestThrottled", "message": "Rate exceeded",
			"clientToken": req.ClientToken, "timestamp": time.Now().Unix()})
		f.mu.Unlock()
		send()
		return nil
	}
	return f.fakeService.Publish(ctx, topic, qos, payload)
}

// TestProgressUpdateLostDoesNotFailJob: a progress report that does not
// get through (a dropped connection, a throttled request: what iotsim's
// drop-puback and throttle-jobs faults cause) is not the job's failure;
// the job goes on and ends with its own outcome. (It ended FAILED with the
// transport's error as the reason.)
func TestProgressUpdateLostDoesNotFailJob(t *testing.T) {
	for _, mode := range []string{"lost", "throttled"} {
		t.Run(mode, func(t *testing.T) {
			svc := &flaky{fakeService: newFakeService(t), mode: mode}
			svc.Queue("ok-1", `{"operation":"echo"}`)
			r, err := New(Options{Thing: svc.thing, Transport: svc, StateDir: t.TempDir(), Handlers: map[string]Handler{"echo": echo()},
				RequestTimeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run = %v", err)
				}
			}()
			e := svc.waitStatus(t, "ok-1")
			if !svc.fired.Load() {
				t.Fatal("the progress update was never sent")
			}
			if e.status != StatusSucceeded || !cmp.Equal(e.details, map[string]string{"said": "hello"}) {
				t.Errorf("job ended %s %v, want SUCCEEDED with the handler's details", e.status, e.details)
			}
		})
	}
}
