package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	cloudjobs "github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/ota"
	"github.com/iotagent/iotagent/ota/otatest"
)

var (
	killRuns  = flag.Int("e2e.killruns", 50, "updates interrupted by kill -9 in TestKillNineDuringUpdate")
	killPar   = flag.Int("e2e.parallel", 6, "kill -9 runs at once (2 cores: 6 is as fast as 8, twice as fast as 3)")
	printLogs = flag.Bool("e2e.logs", false, "print every agent's output, not only a failed one's")
)

const (
	v1       = "1.0.0"
	v2       = "2.0.0"
	bucket   = "ota"
	awsPath  = "/usr/bin/aws"
	fakePkg  = "./ota/e2e/testdata/fakeagent"
	waitLong = 90 * time.Second // an update with rollbacks, on a busy 2-core machine
	// pollEvery: iotsim's job executions and shadows have a Go API but no
	// change notification for tests, so they are polled (the supervisor's
	// events, the other source, are waited on).
	pollEvery = 20 * time.Millisecond
)

var builder *otatest.Builder

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "ota-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	builder = otatest.NewBuilder(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// skipShort skips under -short: these tests build amd64 binaries and run
// real processes (make test-arm runs -short under qemu).
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("OTA end-to-end tests build and run real agents; skipped with -short")
	}
}

func agentBinary(t testing.TB, version, goarch string) string {
	t.Helper()
	p, err := builder.Agent(version, goarch)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fakeBinary(t testing.TB, mode, version string) string {
	t.Helper()
	p, err := builder.Program(fakePkg, "", "-s -w -X main.mode="+mode+" -X main.version="+version)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyPair is a minisign key pair.
type keyPair struct {
	pub string // the "RW…" line
	sec []byte
}

func newKey(t testing.TB) keyPair {
	t.Helper()
	pub, sec, err := ota.GenerateKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(pub)), "\n")
	return keyPair{pub: lines[len(lines)-1], sec: sec}
}

// sign signs data as version for this machine's CPU.
func (k keyPair) sign(t testing.TB, data []byte, version string) string {
	t.Helper()
	return k.signAs(t, data, ota.Meta{Version: version, Arch: ota.DeviceArch})
}

func (k keyPair) signAs(t testing.TB, data []byte, m ota.Meta) string {
	t.Helper()
	sig, err := ota.Sign(k.sec, "", bytes.NewReader(data), "iotagent", time.Now(), m)
	if err != nil {
		t.Fatal(err)
	}
	return string(sig)
}

// release is what a job document says about an artifact.
type release struct {
	Version   string
	Key       string // object key in the bucket
	Size      int64
	SHA256    string
	Signature string
	Arch      string
}

func (r release) document() string {
	d := map[string]any{
		"operation": "ota",
		"version":   r.Version,
		"file": map[string]any{
			"url":       "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/" + bucket + "/" + r.Key + "}",
			"size":      r.Size,
			"sha256":    r.SHA256,
			"signature": r.Signature,
			"arch":      r.Arch,
		},
	}
	b, _ := json.Marshal(d)
	return string(b)
}

// releaseOf describes data, signed with k, for this machine's CPU.
func releaseOf(t testing.TB, k keyPair, version, key string, data []byte) release {
	sum := sha256.Sum256(data)
	return release{Version: version, Key: key, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		Signature: k.sign(t, data, version), Arch: ota.DeviceArch}
}

// world is one iotsim with the OTA bucket, a trusted signing key and a
// watch on artifact downloads.
type world struct {
	sim     *cloud.Sim
	key     keyPair
	objects *objectWatch
	aws     *awsCLI // nil when the aws CLI is not needed
}

func newWorld(t *testing.T, withCLI bool) *world {
	t.Helper()
	w := &world{key: newKey(t), objects: &objectWatch{rules: map[string]*objectRule{}}}
	if withCLI {
		w.aws = newCLI(t)
	}
	w.sim = cloudtest.StartWith(t, cloud.Options{WrapHTTP: w.objects.wrap})
	if w.aws != nil {
		w.aws.ep = w.sim.Endpoint()
	}
	return w
}

// upload puts data into the bucket: with `aws s3 cp` when the world has
// the CLI, else through the Go API.
func (w *world) upload(t *testing.T, key string, data []byte) {
	t.Helper()
	if w.aws == nil {
		if _, err := w.sim.Objects().Put(bucket, key, "application/octet-stream", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return
	}
	p := filepath.Join(t.TempDir(), "artifact")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	w.aws.run(t, nil, "s3", "cp", p, "s3://"+bucket+"/"+key, "--endpoint-url", w.sim.Endpoint().HTTPEndpoint+"/s3")
}

// createJob creates an ota job for thing: with `aws iot create-job` when
// the world has the CLI, else through the Go API. It returns the job's
// creation time as iotsim recorded it.
func (w *world) createJob(t *testing.T, jobID, thing, document string) time.Time {
	t.Helper()
	arn := w.sim.Jobs().ThingARN(thing)
	if w.aws == nil {
		j, err := w.sim.Jobs().CreateJob(cloudjobs.CreateJobInput{JobID: jobID, Targets: []string{arn}, Document: document,
			PresignedURLConfig: &cloudjobs.PresignedURLConfig{RoleARN: "arn:aws:iam::123456789012:role/ota", ExpiresInSec: 3600}})
		if err != nil {
			t.Fatalf("CreateJob %s: %v", jobID, err)
		}
		return j.CreatedAt
	}
	p := filepath.Join(t.TempDir(), "doc.json")
	if err := os.WriteFile(p, []byte(document), 0o600); err != nil {
		t.Fatal(err)
	}
	var out struct {
		JobArn string `json:"jobArn"`
	}
	w.aws.run(t, &out, "--endpoint-url", w.sim.Endpoint().HTTPEndpoint, "iot", "create-job", "--job-id", jobID,
		"--targets", arn, "--document", "file://"+p,
		"--presigned-url-config", `{"roleArn":"arn:aws:iam::123456789012:role/ota","expiresInSec":3600}`)
	if !strings.HasSuffix(out.JobArn, ":job/"+jobID) {
		t.Fatalf("create-job %s: jobArn %q", jobID, out.JobArn)
	}
	j, err := w.sim.Jobs().DescribeJob(jobID)
	if err != nil {
		t.Fatal(err)
	}
	return j.CreatedAt
}

// waitJob waits for the execution of jobID on thing to reach a terminal
// status, polling (see pollEvery).
func (w *world) waitJob(ctx context.Context, thing, jobID string) (cloudjobs.Execution, error) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		e, err := w.sim.Jobs().DescribeJobExecution(thing, jobID, 0)
		if err != nil {
			return e, err
		}
		if e.Status != cloudjobs.StatusQueued && e.Status != cloudjobs.StatusInProgress {
			return e, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return e, fmt.Errorf("job %s on %s still %s %v: %w", jobID, thing, e.Status, e.StatusDetails, ctx.Err())
		}
	}
}

// reportedVersion is the agent.version the thing's shadow reports.
func (w *world) reportedVersion(thing string) string {
	b, err := w.sim.Shadows().Get(thing, "", nil)
	if err != nil {
		return ""
	}
	var doc struct {
		State struct {
			Reported struct {
				Agent struct {
					Version string `json:"version"`
				} `json:"agent"`
			} `json:"reported"`
		} `json:"state"`
	}
	_ = json.Unmarshal(b, &doc)
	return doc.State.Reported.Agent.Version
}

// waitReported polls the shadow (see pollEvery) until it reports version.
func (w *world) waitReported(ctx context.Context, thing, version string) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		got := w.reportedVersion(thing)
		if got == version {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("shadow of %s reports agent.version %q, want %q: %w", thing, got, version, ctx.Err())
		}
	}
}

// device is one thing: its identity, config and state dir, and the
// supervisor running its agent.
type device struct {
	w                 *world
	thing, dir, state string
	cfg               string
	sup               *otatest.Supervisor
	log               *lockedBuffer
}

type deviceOptions struct {
	mqttAddr string                   // default iotsim's
	onEvent  func(otatest.Event)      // the supervisor's OnEvent
	tweak    func(cfg map[string]any) // change the config
}

// newDevice creates thing in iotsim, installs v1 with `iotagent ota init`
// and starts it under a supervisor; it returns once the agent is ready
// (connected, shadow synced).
func (w *world) newDevice(t *testing.T, thing string, o deviceOptions) *device {
	t.Helper()
	certPEM, keyPEM, err := w.sim.CreateThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	id := filepath.Join(dir, "identity")
	if err := cloud.WriteCredentials(id, "device", certPEM, keyPEM, w.sim.CA().CertPEM); err != nil {
		t.Fatal(err)
	}
	d := &device{w: w, thing: thing, dir: dir, state: filepath.Join(dir, "state"), cfg: filepath.Join(dir, "config.json"), log: &lockedBuffer{}}
	addr := o.mqttAddr
	if addr == "" {
		addr = w.sim.MQTTAddrs()[0]
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	httpHost, _, _ := net.SplitHostPort(strings.TrimPrefix(w.sim.Endpoint().HTTPEndpoint, "http://"))
	cfg := map[string]any{
		"thing_name": thing,
		"state_dir":  d.state,
		"log":        map[string]any{"level": "info", "format": "text"},
		"mqtt":       map[string]any{"endpoint": host, "port": p, "root_ca": filepath.Join(id, "root-ca.pem"), "connect_timeout_s": 5},
		"identity":   map[string]any{"cert": filepath.Join(id, "device.crt"), "key": filepath.Join(id, "device.key")},
		"localapi":   map[string]any{"enabled": false},
		"sensors":    map[string]any{"motion": map[string]any{"driver": "sim"}, "bme280": map[string]any{"driver": "sim"}},
		"jobs":       map[string]any{"enabled": true},
		"ota": map[string]any{"enabled": true, "trusted_keys": []string{w.key.pub}, "allowed_hosts": []string{httpHost},
			"trial_timeout_s": 10},
	}
	if o.tweak != nil {
		o.tweak(cfg)
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(d.cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := agentBinary(t, v1, "")
	if out, err := exec.Command(bin, "ota", "init", "--state-dir", d.state, "--binary", bin, "--version", v1).CombinedOutput(); err != nil {
		t.Fatalf("iotagent ota init: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() || *printLogs {
			t.Logf("%s: supervisor events:\n%s", thing, d.eventLog())
			t.Logf("%s: agent output:\n%s", thing, d.log.String())
		}
	})
	d.sup = otatest.Start(t, otatest.Options{
		StateDir:        d.state,
		Args:            []string{"--config", d.cfg},
		RestartDelay:    100 * time.Millisecond,
		StartTimeout:    60 * time.Second,
		StopTimeout:     10 * time.Second,
		WatchdogTimeout: 4 * time.Second,
		Output:          d.log,
		OnEvent:         o.onEvent,
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := d.sup.Wait(ctx, 0, otatest.Is(otatest.Ready)); err != nil {
		t.Fatalf("%s: v1 not ready: %v", thing, err)
	}
	return d
}

func (d *device) eventLog() string {
	var b strings.Builder
	for _, e := range d.sup.Events() {
		if e.Kind != otatest.Ping {
			fmt.Fprintln(&b, e)
		}
	}
	return b.String()
}

// events returns the supervisor's events of kind k.
func (d *device) events(k otatest.Kind) []otatest.Event {
	var out []otatest.Event
	for _, e := range d.sup.Events() {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// runningVersion checks that one slot works: the agent started last, from
// the slot STATE/ota/current points to, is ready (connected, shadow in
// sync: READY=1 comes with it) and has not exited, and the binary there
// answers `iotagent version`. It returns that version.
func (d *device) runningVersion(ctx context.Context) (string, error) {
	evs := d.sup.Events()
	last := -1
	for i, e := range evs {
		if e.Kind == otatest.Started {
			last = i
		}
	}
	if last < 0 {
		return "", errors.New("the agent was never started")
	}
	st := evs[last]
	if _, err := d.sup.Wait(ctx, st.Seq, func(e otatest.Event) bool {
		return e.Start == st.Start && (e.Kind == otatest.Ready || e.Kind == otatest.Exited)
	}); err != nil {
		return "", fmt.Errorf("start %d (slot %s): %w", st.Start, st.Slot, err)
	}
	for _, e := range d.sup.Events()[st.Seq:] {
		if e.Kind == otatest.Exited {
			return "", fmt.Errorf("the agent of start %d (slot %s) exited: %v", st.Start, st.Slot, e)
		}
	}
	cur := ota.NewLayout(d.state).Current()
	target, err := os.Readlink(cur)
	if err != nil {
		return "", err
	}
	if filepath.Base(target) != st.Slot {
		return "", fmt.Errorf("current points to %s, the running agent started from slot %s", target, st.Slot)
	}
	return otatest.BinaryVersion(filepath.Join(cur, ota.Binary))
}

// otaState reads STATE/ota/state.json.
func (d *device) otaState(t testing.TB) ota.Status {
	t.Helper()
	var st ota.Status
	if err := json.Unmarshal(readFile(t, filepath.Join(ota.NewLayout(d.state).Dir, "state.json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// lockedBuffer collects the agents' output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// objectWatch sees the artifact downloads (GETs under /s3/ota/) at
// iotsim's HTTP listener: it records each with its Range header and
// status, and applies per-object rules.
type objectWatch struct {
	mu    sync.Mutex
	reqs  []objectRequest
	rules map[string]*objectRule
}

type objectRequest struct {
	Key, Range string
	Status     int
	Sent       int64
}

// objectRule disturbs the downloads of one object.
type objectRule struct {
	// cutAt, when > 0, ends the first GET's response after that many
	// bytes (the connection drops mid-download).
	cutAt int64
	// onSent, if set, is called after each write of a GET's body with the
	// bytes sent so far in that response and the response's number.
	onSent func(sent int64, request int)
	gets   int
}

func (o *objectWatch) rule(key string, r *objectRule) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rules[key] = r
}

func (o *objectWatch) requests(key string) []objectRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []objectRequest
	for _, r := range o.reqs {
		if r.Key == key {
			out = append(out, r)
		}
	}
	return out
}

var errCut = errors.New("test: download cut off")

func (o *objectWatch) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.URL.Path, "/s3/"+bucket+"/")
		if !ok || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		o.mu.Lock()
		rule := o.rules[key]
		n := 0
		var cut int64 = -1
		var onSent func(int64, int)
		if rule != nil {
			rule.gets++
			n = rule.gets
			if n == 1 && rule.cutAt > 0 {
				cut = rule.cutAt
			}
			onSent = rule.onSent
		}
		o.mu.Unlock()
		cw := &countingWriter{ResponseWriter: w, cut: cut, status: http.StatusOK, onSent: onSent, n: n}
		next.ServeHTTP(cw, r)
		o.mu.Lock()
		o.reqs = append(o.reqs, objectRequest{Key: key, Range: r.Header.Get("Range"), Status: cw.status, Sent: cw.sent})
		o.mu.Unlock()
	})
}

type countingWriter struct {
	http.ResponseWriter
	status int
	sent   int64
	cut    int64 // -1: none
	onSent func(int64, int)
	n      int
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	var err error
	if c.cut >= 0 && c.sent+int64(len(b)) > c.cut {
		b, err = b[:c.cut-c.sent], errCut
	}
	n, werr := c.ResponseWriter.Write(b)
	c.sent += int64(n)
	if c.onSent != nil {
		c.onSent(c.sent, c.n)
	}
	if werr != nil {
		return n, werr
	}
	return n, err
}

// awsCLI runs the real aws CLI against iotsim.
type awsCLI struct {
	home string
	ep   cloud.Endpoint // its credentials sign the CLI's requests
}

func newCLI(t *testing.T) *awsCLI {
	t.Helper()
	if _, err := os.Stat(awsPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", awsPath, err)
		}
		t.Skipf("%s not installed (%v); skipping", awsPath, err)
	}
	return &awsCLI{home: t.TempDir()}
}

// run runs the CLI; v, if not nil, gets its JSON output.
func (c *awsCLI) run(t testing.TB, v any, args ...string) {
	t.Helper()
	cmd := exec.Command(awsPath, args...)
	cmd.Dir = c.home
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + c.home, "AWS_ACCESS_KEY_ID=" + c.ep.AWSAccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.ep.AWSSecretAccessKey,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1", "AWS_EC2_METADATA_DISABLED=true"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	if v != nil {
		if err := json.Unmarshal(out.Bytes(), v); err != nil {
			t.Fatalf("aws %s: output %q: %v", strings.Join(args, " "), out.String(), err)
		}
	}
}

// tcpProxy forwards TCP connections (the agent's MQTT over TLS) to
// target while up; down, it drops every connection and refuses new ones
// (they are accepted and closed at once), as a network outage would.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	up    bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, up: true, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.setUp(false)
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for c := range p.conns {
			c.Close()
		}
	}
}

// track registers c while the proxy is up; false (c closed) when down.
func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.up {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tcpProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				p.untrack(c)
				return
			}
			if !p.track(u) {
				p.untrack(c)
				return
			}
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
			<-done
			p.untrack(c, u)
			<-done
		}()
	}
}
