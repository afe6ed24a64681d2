package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/agent/outbox"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/internal/logring"
	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sensortest"
)

// runAgentFor runs an agent for b until the returned stop (or the test's
// end), without waiting for it to connect; the broker's closes after a
// denied packet are followed by a 10 ms backoff instead of 5 s.
func runAgentFor(t *testing.T, b *box) (stop func()) {
	t.Helper()
	cfg, err := loadConfigWith(b.cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Telemetry.IntervalS = 3600
	env := sensortest.NewFakeSensor("bme280")
	env.Set(sensors.Reading{TemperatureC: 21.5, HumidityPct: 40, PressureKPa: 101.3})
	hw := &agent.Hardware{Motion: sensortest.NewFakeInput("motion"), Contact: sensortest.NewFakeInput("contact"), Env: env,
		Outputs: map[string]sensors.Output{"led": sensortest.NewFakeOutput("led")}}
	cfg.Sensors.Outputs = []config.Output{{Name: "led", Driver: "sim"}}
	ring := logring.New(200)
	a, err := agent.New(cfg, agent.Options{Logger: slog.New(ring.Handler(slog.NewTextHandler(io.Discard, nil))),
		Hardware: hw, Version: "cli-test", AuthBackoffMin: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a.SetLogRing(ring)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// statusJSON polls iotagent status --json until ok accepts it.
func statusJSON(t *testing.T, b *box, what string, ok func(map[string]json.RawMessage) bool) map[string]json.RawMessage {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := iotagent("status", "--json", "--config", b.cfgPath)
		var st map[string]json.RawMessage
		if err == nil && json.Unmarshal([]byte(out), &st) == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v\n%s", what, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func section[T any](t *testing.T, st map[string]json.RawMessage, name string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(st[name], &v); err != nil {
		t.Fatalf("section %s: %v", name, err)
	}
	return v
}

func certARNOf(t *testing.T, sim *cloud.Sim, thing string) string {
	t.Helper()
	ids, err := sim.Registry().ThingPrincipals(thing)
	if err != nil || len(ids) != 1 {
		t.Fatalf("principals of %s: %v %v", thing, ids, err)
	}
	c, err := sim.Registry().DescribeCertificate(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	return c.ARN
}

// A poison message (telemetry for an old thing name, which the policy
// denies) in the outbox: the agent quarantines it after 3 closes, the
// other 4 messages are delivered, the technician sees it with iotagent
// outbox list --quarantine, status and diag, and once the policy allows
// the topic, iotagent outbox retry delivers it. With the agent stopped,
// the same commands work on the state dir.
func TestOutboxPoisonThroughCLI(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "box")
	var mu sync.Mutex
	got := map[string]int{}
	for _, topic := range []string{"telemetry/box", "telemetry/old-box"} {
		sim.Broker().Handle(topic, func(_ *broker.Principal, topic string, p []byte) {
			if strings.Contains(string(p), `"n":`) {
				mu.Lock()
				got[topic+" "+string(p)]++
				mu.Unlock()
			}
		})
	}
	delivered := func(prefix string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for k := range got {
			if strings.HasPrefix(k, prefix+" ") {
				n++
			}
		}
		return n
	}
	// What an agent of the old name left queued: 2 good, the poison, 2 good.
	stateDir := b.cfg["state_dir"].(string)
	appendOffline(t, stateDir, func(ob *outbox.Outbox) {
		for i := range 5 {
			topic := "telemetry/box"
			if i == 2 {
				topic = "telemetry/old-box"
			}
			if _, err := ob.Append(topic, fmt.Appendf(nil, `{"n":%d}`, i), outbox.Telemetry); err != nil {
				t.Fatal(err)
			}
		}
	})
	stop := runAgentFor(t, b)

	st := statusJSON(t, b, "one quarantined message and an empty queue", func(st map[string]json.RawMessage) bool {
		var ob localapi.Outbox
		return json.Unmarshal(st["outbox"], &ob) == nil && ob.Quarantined == 1 && ob.Depth == 0
	})
	if good, poison := delivered("telemetry/box"), delivered("telemetry/old-box"); good != 4 || poison != 0 {
		t.Fatalf("delivered %d good and %d poison messages, want 4 and 0", good, poison)
	}
	if ob := section[localapi.Outbox](t, st, "outbox"); ob.QuarantinedTotal != 1 || ob.Dropped != 0 {
		t.Errorf("outbox section %+v", ob)
	}
	out, err := iotagent("outbox", "list", "--quarantine", "--config", b.cfgPath)
	if err != nil || !strings.Contains(out, "telemetry/old-box") || !strings.Contains(out, "3 times in a row") || !strings.Contains(out, `{"n":2}`) {
		t.Errorf("outbox list --quarantine: %v\n%s", err, out)
	}
	var list localapi.OutboxList
	out, err = iotagent("outbox", "list", "--quarantine", "--json", "--config", b.cfgPath)
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Messages) != 1 || list.Offline {
		t.Fatalf("outbox list --quarantine --json: %v\n%s", err, out)
	}
	poisonID := list.Messages[0].ID
	if out, _ := iotagent("status", "--config", b.cfgPath); !strings.Contains(out, "1 QUARANTINED") {
		t.Errorf("status does not show the quarantine:\n%s", out)
	}
	res := b.diag(t, nil)
	expect(t, res, "outbox", fail, "1 message(s) in the quarantine")
	expect(t, res, "outbox", fail, "iotagent outbox retry")
	// The shadow says so too.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		sh, err := sim.Shadows().Get("box", "", nil)
		if err == nil && strings.Contains(string(sh), `"quarantined":1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shadow has no reported.outbox.quarantined 1: %v\n%s", err, sh)
		}
	}

	// Fixed policy, then retry: delivered exactly once, quarantine empty.
	if _, err := sim.Registry().CreatePolicy("old-name", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/telemetry/old-box"}]}`); err != nil {
		t.Fatal(err)
	}
	if err := sim.Registry().AttachPolicy("old-name", certARNOf(t, sim, "box")); err != nil {
		t.Fatal(err)
	}
	if out, err := iotagent("outbox", "retry", "--config", b.cfgPath); err != nil || !strings.Contains(out, fmt.Sprintf("IDs %d", poisonID)) {
		t.Fatalf("outbox retry: %v\n%s", err, out)
	}
	statusJSON(t, b, "the retried message acknowledged", func(st map[string]json.RawMessage) bool {
		var ob localapi.Outbox
		return json.Unmarshal(st["outbox"], &ob) == nil && ob.Quarantined == 0 && ob.Depth == 0
	})
	if n := delivered("telemetry/old-box"); n != 1 {
		t.Errorf("retried message delivered %d times, want 1", n)
	}
	if out, err := iotagent("outbox", "retry", "7", "--config", b.cfgPath); err == nil || !strings.Contains(out+err.Error(), "not in the quarantine") {
		t.Errorf("retry of an unknown ID: %v\n%s", err, out)
	}

	// While the agent holds agent.db, a command that cannot reach its
	// socket says that it is running.
	_, err = iotagent("outbox", "list", "--socket", filepath.Join(t.TempDir(), "none.sock"), "--config", b.cfgPath)
	if err == nil || !strings.Contains(err.Error(), "the agent is running") || exitCode(err) != exitNoAgent {
		t.Errorf("list with the agent running but unreachable: %v (exit %d)", err, exitCode(err))
	}

	// Offline: the agent is stopped; a quarantined message is listed and
	// purged from the state dir.
	stop()
	var id uint64
	appendOffline(t, stateDir, func(ob *outbox.Outbox) {
		id, _ = ob.Append("telemetry/older-box", []byte(`{"x":1}`), outbox.Telemetry)
		if _, err := ob.Quarantine(id, "test"); err != nil {
			t.Fatal(err)
		}
		ob.Append("telemetry/box", []byte(`{"y":1}`), outbox.Telemetry)
	})
	out, err = iotagent("outbox", "list", "--quarantine", "--config", b.cfgPath)
	if err != nil || !strings.Contains(out, "not running") || !strings.Contains(out, "telemetry/older-box") {
		t.Errorf("offline list: %v\n%s", err, out)
	}
	if out, err := iotagent("outbox", "purge", "--quarantine", fmt.Sprint(id), "--config", b.cfgPath); err != nil || !strings.Contains(out, "1 message(s) deleted from the quarantine") {
		t.Errorf("offline purge: %v\n%s", err, out)
	}
	if _, err := iotagent("outbox", "purge", "--config", b.cfgPath); exitCode(err) != exitUsage {
		t.Errorf("purge without IDs or --all: %v", err)
	}
	out, err = iotagent("outbox", "list", "--json", "--config", b.cfgPath)
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || !list.Offline || len(list.Messages) != 1 || list.Stats.Quarantined != 0 || list.Stats.Purged != 1 {
		t.Errorf("offline list --json after purge: %v\n%s", err, out)
	}
	res = b.diag(t, nil)
	expect(t, res, "outbox", warn, "1 message(s) queued while offline (read from the state dir")
}

// appendOffline opens the state dir's outbox while no agent runs.
func appendOffline(t *testing.T, stateDir string, f func(*outbox.Outbox)) {
	t.Helper()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(stateDir, "agent.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob, err := outbox.Open(db, outbox.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f(ob)
}

// A policy without the Jobs topics: the agent's status and diag name the
// denied filter; once the full policy is attached, it connects and stays
// connected.
func TestPolicyWithoutJobsDiagnosed(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "box")
	arn := certARNOf(t, sim, "box")
	const noJobs = `{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
	  {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":["arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*","arn:aws:iot:*:*:topic/telemetry/${iot:Connection.Thing.ThingName}"]},
	  {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"}]}`
	if _, err := sim.Registry().CreatePolicy("no-jobs", noJobs); err != nil {
		t.Fatal(err)
	}
	if err := sim.Registry().DetachPolicy(provisioning.DevicePolicyName, arn); err != nil {
		t.Fatal(err)
	}
	if err := sim.Registry().AttachPolicy("no-jobs", arn); err != nil {
		t.Fatal(err)
	}
	const denied = "$aws/things/box/jobs/notify-next"
	// Before the agent runs, diag's own round trip finds it.
	res := b.diag(t, nil)
	expect(t, res, "round trip", fail, "subscribe to "+denied+": the IoT policy probably denies it")
	expect(t, res, "mqtt", pass, "connected")

	runAgentFor(t, b)
	st := statusJSON(t, b, "a diagnosis naming the jobs filter", func(st map[string]json.RawMessage) bool {
		var c localapi.Connection
		return json.Unmarshal(st["connection"], &c) == nil && c.Diagnosis != nil && c.Diagnosis.Topic == denied && c.Diagnosis.InARow >= 2
	})
	if c := section[localapi.Connection](t, st, "connection"); c.Diagnosis.Kind != "subscribe" ||
		!strings.Contains(c.Diagnosis.Text, "the IoT policy probably denies it") || !strings.Contains(c.LastError, denied) {
		t.Errorf("connection section %+v", c)
	}
	if out, _ := iotagent("status", "--config", b.cfgPath); !strings.Contains(out, "Policy?") || !strings.Contains(out, "subscribe to "+denied) {
		t.Errorf("status does not name the denied filter:\n%s", out)
	}
	res = b.diag(t, nil)
	expect(t, res, "subscriptions", fail, "subscribe to "+denied)
	expect(t, res, "subscriptions", fail, "allow iot:Subscribe on topicfilter/"+denied)
	expect(t, res, "thing name", pass, "agree: box")

	// Fixed: the full policy. retry reconnects at once.
	if err := sim.Registry().AttachPolicy(provisioning.DevicePolicyName, arn); err != nil {
		t.Fatal(err)
	}
	if out, err := iotagent("outbox", "retry", "--config", b.cfgPath); err != nil {
		t.Fatalf("outbox retry: %v\n%s", err, out)
	}
	st = statusJSON(t, b, "connected and in sync", func(st map[string]json.RawMessage) bool {
		var sh localapi.Shadow
		return json.Unmarshal(st["shadow"], &sh) == nil && sh.InSync
	})
	c := section[localapi.Connection](t, st, "connection")
	if !c.Connected || c.Diagnosis != nil || c.Subscribed != c.Subscriptions {
		t.Fatalf("after the fix: %+v", c)
	}
	// It stays connected: a shadow resync round trip later, same connection.
	if out, err := iotagent("shadow", "resync", "--config", b.cfgPath); err != nil {
		t.Fatalf("shadow resync: %v\n%s", err, out)
	}
	st = statusJSON(t, b, "in sync after the resync", func(st map[string]json.RawMessage) bool {
		var sh localapi.Shadow
		return json.Unmarshal(st["shadow"], &sh) == nil && sh.InSync
	})
	if c2 := section[localapi.Connection](t, st, "connection"); !c2.Connected || c2.Connects != c.Connects || c2.Disconnects != c.Disconnects {
		t.Errorf("connects %d -> %d, disconnects %d -> %d: the connection did not stay up", c.Connects, c2.Connects, c.Disconnects, c2.Disconnects)
	}
	res = b.diag(t, nil)
	expect(t, res, "subscriptions", pass, "acknowledged")
	expect(t, res, "publishes", pass, "acknowledged")
}
