package jobs

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeService is a small AWS IoT Jobs service for one thing, speaking the
// spec's MQTT messages (spec/jobs.md §3–§6) over an in-memory Transport.
type fakeService struct {
	t     testing.TB
	thing string
	mu    sync.Mutex
	subs  map[string]func(string, []byte)
	execs []*fakeExec
	// updates records every update request the device sent.
	updates []updateRequest
	changed chan struct{} // signalled on every terminal status
}

type fakeExec struct {
	id      string
	doc     json.RawMessage
	status  string
	details map[string]string
	version int64
}

func newFakeService(t testing.TB) *fakeService {
	return &fakeService{t: t, thing: "box-1", subs: map[string]func(string, []byte){}, changed: make(chan struct{}, 100)}
}

func (s *fakeService) Subscribe(filter string, qos byte, h func(string, []byte)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[filter] = h
	return nil
}

func match(filter, topic string) bool {
	f, tp := strings.Split(filter, "/"), strings.Split(topic, "/")
	if len(f) != len(tp) {
		return false
	}
	for i := range f {
		if f[i] != "+" && f[i] != tp[i] {
			return false
		}
	}
	return true
}

// deliver hands a message to the matching subscriber, as the broker would.
func (s *fakeService) deliverLocked(topic string, v any) func() {
	b, _ := json.Marshal(v)
	var hs []func(string, []byte)
	for f, h := range s.subs {
		if match(f, topic) {
			hs = append(hs, h)
		}
	}
	return func() {
		for _, h := range hs {
			h(topic, b)
		}
	}
}

func (s *fakeService) headLocked() *fakeExec {
	for _, st := range []string{StatusInProgress, "QUEUED"} {
		for _, e := range s.execs {
			if e.status == st {
				return e
			}
		}
	}
	return nil
}

func (s *fakeService) wire(e *fakeExec) map[string]any {
	return map[string]any{"jobId": e.id, "status": e.status, "jobDocument": e.doc, "statusDetails": e.details,
		"versionNumber": e.version, "executionNumber": 1}
}

func (s *fakeService) notifyNextLocked() func() {
	h := s.headLocked()
	msg := map[string]any{"timestamp": time.Now().Unix()}
	if h != nil {
		msg["execution"] = s.wire(h)
	}
	return s.deliverLocked("$aws/things/"+s.thing+"/jobs/notify-next", msg)
}

// Queue adds a job; notify-next goes out if it became the head.
func (s *fakeService) Queue(id, doc string) {
	s.mu.Lock()
	before := s.headLocked()
	s.execs = append(s.execs, &fakeExec{id: id, doc: json.RawMessage(doc), status: "QUEUED", version: 1})
	send := func() {}
	if before == nil {
		send = s.notifyNextLocked()
	}
	s.mu.Unlock()
	send()
}

// Cancel forces the execution to CANCELED.
func (s *fakeService) Cancel(id string) {
	s.mu.Lock()
	for _, e := range s.execs {
		if e.id == id {
			e.status = "CANCELED"
		}
	}
	send := s.notifyNextLocked()
	s.mu.Unlock()
	send()
	s.changed <- struct{}{}
}

func (s *fakeService) Exec(id string) fakeExec {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.execs {
		if e.id == id {
			return *e
		}
	}
	return fakeExec{}
}

func (s *fakeService) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	prefix := "$aws/things/" + s.thing + "/jobs/"
	op := strings.TrimPrefix(topic, prefix)
	var send []func()
	s.mu.Lock()
	reply := func(suffix string, v map[string]any, tok string) {
		v["clientToken"] = tok
		v["timestamp"] = time.Now().Unix()
		send = append(send, s.deliverLocked(topic+"/"+suffix, v))
	}
	switch {
	case op == "start-next":
		var req startNextRequest
		_ = json.Unmarshal(payload, &req)
		h := s.headLocked()
		out := map[string]any{}
		if h != nil {
			if h.status == "QUEUED" {
				h.status = StatusInProgress
				h.version++
			}
			out["execution"] = s.wire(h)
		}
		reply("accepted", out, req.ClientToken)
	case strings.HasSuffix(op, "/update"):
		var req updateRequest
		_ = json.Unmarshal(payload, &req)
		s.updates = append(s.updates, req)
		id := strings.TrimSuffix(op, "/update")
		var e *fakeExec
		for _, x := range s.execs {
			if x.id == id {
				e = x
			}
		}
		switch {
		case e == nil:
			reply("rejected", map[string]any{"code": "ResourceNotFound", "message": "no such job"}, req.ClientToken)
		case e.status != StatusInProgress && e.status != "QUEUED":
			reply("rejected", map[string]any{"code": "InvalidStateTransition", "message": "terminal",
				"executionState": map[string]any{"status": e.status, "versionNumber": e.version}}, req.ClientToken)
		case req.ExpectedVersion != 0 && req.ExpectedVersion != e.version:
			reply("rejected", map[string]any{"code": "VersionMismatch", "message": "version",
				"executionState": map[string]any{"status": e.status, "versionNumber": e.version}}, req.ClientToken)
		default:
			wasHead := s.headLocked() == e
			e.status, e.details = req.Status, req.StatusDetails
			e.version++
			reply("accepted", map[string]any{"executionState": map[string]any{"status": e.status, "statusDetails": e.details, "versionNumber": e.version}}, req.ClientToken)
			if e.status != StatusInProgress {
				if wasHead {
					send = append(send, s.notifyNextLocked())
				}
				defer func() { s.changed <- struct{}{} }()
			}
		}
	}
	s.mu.Unlock()
	for _, f := range send {
		f()
	}
	return nil
}

// waitStatus waits until job id has a terminal status.
func (s *fakeService) waitStatus(t testing.TB, id string) fakeExec {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		e := s.Exec(id)
		if e.status != "QUEUED" && e.status != StatusInProgress && e.status != "" {
			return e
		}
		select {
		case <-s.changed:
		case <-timeout:
			t.Fatalf("job %s still %s", id, e.status)
		}
	}
}
