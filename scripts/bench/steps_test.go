package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/jobs"
)

func TestSubscribeAndPublishPackets(t *testing.T) {
	typ, flags, body, err := readPacket(bufio.NewReader(bytes.NewReader(subscribePacket(7, "a/b", "c/#"))))
	if err != nil || typ != pktSubscribe || flags != 0x02 {
		t.Fatalf("SUBSCRIBE read back as type %d flags %#x: %v", typ, flags, err)
	}
	if want := []byte{0, 7, 0, 3, 'a', '/', 'b', 1, 0, 3, 'c', '/', '#', 1}; !bytes.Equal(body, want) {
		t.Errorf("SUBSCRIBE body = %v, want %v", body, want)
	}
	typ, flags, body, err = readPacket(bufio.NewReader(bytes.NewReader(publishPacket("t/1", 9, []byte("{}")))))
	if err != nil || typ != pktPublish {
		t.Fatalf("PUBLISH read back as type %d: %v", typ, err)
	}
	topic, id, payload, err := parsePublish(flags, body)
	if diff := cmp.Diff([]any{"t/1", uint16(9), "{}"}, []any{topic, id, string(payload)}); diff != "" || err != nil {
		t.Errorf("parsePublish (-want +got):\n%s%v", diff, err)
	}
	for _, tc := range []struct {
		name  string
		flags byte
		body  []byte
	}{
		{"short", 0, []byte{0}},
		{"topic past the end", 0, []byte{0, 9, 'a'}},
		{"QoS 1 without id", 0x02, []byte{0, 1, 'a', 0}},
	} {
		if _, _, _, err := parsePublish(tc.flags, tc.body); !errors.Is(err, errMalformed) {
			t.Errorf("parsePublish(%s) err = %v, want errMalformed", tc.name, err)
		}
	}
	if codes, err := subackCodes(pktSuback, []byte{0, 7, 1, 0x80}, 7); err != nil || !bytes.Equal(codes, []byte{1, 0x80}) {
		t.Errorf("subackCodes = %v, %v", codes, err)
	}
	if _, err := subackCodes(pktSuback, []byte{0, 8, 1}, 7); !errors.Is(err, errMalformed) {
		t.Errorf("subackCodes(wrong id) err = %v", err)
	}
}

// The agent steps' configs are valid agent configs with jobs and
// Defender on, and the second one debounces motion for 1 ms.
func TestAgentConfigs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("..", "..", "configs", "chocolate-box.json")
	for _, tc := range []struct {
		name     string
		edit     func(map[string]any)
		debounce int
	}{
		{"issue", issueConfig, 50},
		{"debounce 1", func(c map[string]any) { issueConfig(c); section(section(c, "parts"), "motion")["debounce_ms"] = 1 }, 1},
	} {
		dst := filepath.Join(dir, tc.name+".json")
		if err := writeAgentConfig(src, dst, tc.edit); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		c, err := config.Parse(b, dir)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := []any{c.Jobs.Enabled, c.Defender.Enabled, c.Defender.IntervalS, c.Parts["motion"].DebounceMs}
		if diff := cmp.Diff([]any{true, true, defenderIntervalS, tc.debounce}, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	if err := writeAgentConfig(filepath.Join(dir, "missing.json"), filepath.Join(dir, "x.json"), issueConfig); err == nil {
		t.Error("a missing config was accepted")
	}
}

// One device through fleet provisioning's CSR path against a real iotsim.
func TestProvisionCSR(t *testing.T) {
	sim := cloudtest.Start(t, "")
	ep := sim.Endpoint()
	claim, err := tls.LoadX509KeyPair(ep.ClaimCert, ep.ClaimKey)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := newCSR()
	if err != nil {
		t.Fatal(err)
	}
	name, err := provisionCSR(context.Background(), sim.MQTTAddrs()[0], sim.CA().Pool(), claim, "BP-000001", csr, 20*time.Second)
	if err != nil || name != "BP-000001" {
		t.Fatalf("provisioned %q, %v", name, err)
	}
	if _, err := sim.Registry().DescribeThing("BP-000001"); err != nil {
		t.Errorf("no thing registered: %v", err)
	}
	// A CSR that is not one is rejected, and said so.
	if _, err := provisionCSR(context.Background(), sim.MQTTAddrs()[0], sim.CA().Pool(), claim, "BP-000002", "not a CSR", 20*time.Second); !errors.Is(err, errRejected) {
		t.Errorf("bad CSR: err = %v, want errRejected", err)
	}
}

// The jobs step's device side against a real iotsim: notify-next, then
// start-next and SUCCEEDED.
func TestJobsDeviceSide(t *testing.T) {
	sim := cloudtest.Start(t, "")
	cert, key, err := sim.CreateThing("job-00000")
	if err != nil {
		t.Fatal(err)
	}
	d := &device{name: "job-00000", cert: cert, key: key}
	if err := d.connect(sim.MQTTAddrs()[0], sim.CA().Pool()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.c.close)
	if err := d.c.subscribe(10*time.Second, jobTopics(d.name)...); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Jobs().CreateJob(jobs.CreateJobInput{JobID: "j1", Targets: []string{sim.Jobs().ThingARN(d.name)}, Document: `{"operation":"noop"}`}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	if err := awaitNotifyNext(d.c, d.name, "j1", deadline); err != nil {
		t.Fatal(err)
	}
	if err := runExecution(d.c, d.name, "j1", deadline); err != nil {
		t.Fatal(err)
	}
	e, err := sim.Jobs().DescribeJobExecution(d.name, "j1", 0)
	if err != nil || e.Status != jobs.StatusSucceeded {
		t.Errorf("execution %+v, %v; want SUCCEEDED", e, err)
	}
	// Nothing left: start-next answers without an execution.
	if err := runExecution(d.c, d.name, "j1", deadline); !errors.Is(err, errRejected) {
		t.Errorf("second start-next: err = %v, want errRejected", err)
	}
}

// TestCountOpens: every open of the file is counted, one at a time (the
// idle-1s step's read count), and none after stop.
func TestCountOpens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "temp")
	if err := os.WriteFile(file, []byte("45000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	stop, err := countOpens(file, func() { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 5; i++ {
		b, err := os.ReadFile(file)
		if err != nil || string(b) != "45000\n" {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for n.Load() < i && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := n.Load(); got != i {
			t.Fatalf("after %d opens, counted %d", i, got)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	os.ReadFile(file)
	if got := n.Load(); got != 5 {
		t.Errorf("counted %d, want 5 (none after stop)", got)
	}
}
