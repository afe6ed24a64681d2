package docs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A block is a ```sh block that a document marks to be run:
//
//	<!-- doctest: NAME [background] [needs=aws] [ready=SHELL COMMAND] -->
//	```sh
//	...
//	```
//
// background: the block is a long-running process (iotsim serve, iotagent
// run), started and left running until the test ends; ready is a command
// that succeeds once it is ready. needs=aws: the block drives the aws CLI.
type block struct {
	file, name string
	background bool
	needsAWS   bool
	ready      string
	body       string
}

var marker = regexp.MustCompile("(?m)^ *<!-- doctest: ([a-z0-9-]+)((?: [^>]*?)?) -->\n *```sh\n((?s:.*?)) *```")

// fileMarker marks a block whose text the commands after it read from a
// file: <!-- doctest-file: NAME --> before it.
var fileMarker = regexp.MustCompile("(?m)^ *<!-- doctest-file: ([A-Za-z0-9._-]+) -->\n *```[a-z]*\n((?s:.*?)) *```")

// files writes the doctest-file blocks of doc into the test's directory.
func (e *env) files(doc string) {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.root, doc))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range fileMarker.FindAllStringSubmatch(string(data), -1) {
		if err := os.WriteFile(filepath.Join(e.dir, m[1]), []byte(m[2]), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
}

// The documents with marked blocks, from the repository root.
var documents = []string{"README.md", "docs/manufacturing.md", "docs/raspberry-pi.md", "docs/cloud-side.md"}

func blocks(t *testing.T, root string) map[string]block {
	t.Helper()
	out := map[string]block{}
	for _, doc := range documents {
		data, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		if n, m := strings.Count(string(data), "<!-- doctest:"), len(marker.FindAllSubmatch(data, -1)); n != m {
			t.Fatalf("%s: %d doctest markers, %d of them before a ```sh block", doc, n, m)
		}
		for _, m := range marker.FindAllStringSubmatch(string(data), -1) {
			b := block{file: doc, name: m[1], body: m[3]}
			opts := strings.TrimSpace(m[2])
			if i := strings.Index(opts, "ready="); i >= 0 {
				b.ready, opts = opts[i+len("ready="):], opts[:i]
			}
			for _, o := range strings.Fields(opts) {
				switch o {
				case "background":
					b.background = true
				case "needs=aws":
					b.needsAWS = true
				default:
					t.Fatalf("%s: doctest %s: unknown option %q", doc, b.name, o)
				}
			}
			if _, dup := out[b.name]; dup {
				t.Fatalf("%s: doctest %s twice", doc, b.name)
			}
			out[b.name] = b
		}
	}
	return out
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// env is one walk through the documents: a fresh directory with bin/ and
// configs/, and iotsim's ports.
type env struct {
	t          *testing.T
	root, dir  string
	mqtt, http string
	environ    []string
	ran        map[string]bool
}

func newEnv(t *testing.T) *env {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &env{t: t, root: root, dir: dir, mqtt: freePort(t), http: freePort(t), ran: map[string]bool{}}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "bin")+"/", "./cmd/iotagent", "./cmd/iotsim")
	// For the machine the go tool runs on: under make test-arm this test
	// runs emulated, but the commands of the docs run natively.
	host, err := exec.Command("go", "env", "GOHOSTOS", "GOHOSTARCH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	hostOS, hostArch, _ := strings.Cut(strings.TrimSpace(string(host)), "\n")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0", "GOOS="+hostOS, "GOARCH="+hostArch)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "configs"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy configs: %v\n%s", err, out)
	}
	for _, d := range []string{"tmp", "home", "shim"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// make in a block is the repository's Makefile with bin/ here;
	// make build is what was just done, make test is the suite this
	// test is part of.
	shim := fmt.Sprintf(`#!/bin/sh
case "$1" in build|test) echo "doctest: make $1: done by the test"; exit 0;; esac
exec %q -C %q BIN=%q "$@"
`, mustLook(t, "make"), root, filepath.Join(dir, "bin"))
	if err := os.WriteFile(filepath.Join(dir, "shim", "make"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	e.environ = append(os.Environ(), "HOME="+filepath.Join(dir, "home"), "PATH="+filepath.Join(dir, "shim")+":"+os.Getenv("PATH"),
		"AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	return e
}

func mustLook(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

// script is b's body as it runs here: /tmp/ is the test's directory, and
// iotsim listens on the test's ports.
func (e *env) script(s string) string {
	s = strings.ReplaceAll(s, "/tmp/", e.dir+"/tmp/")
	s = strings.ReplaceAll(s, "bin/iotsim serve", "bin/iotsim serve --mqtt-addr 127.0.0.1:"+e.mqtt+" --http-addr 127.0.0.1:"+e.http)
	return strings.ReplaceAll(s, "8883", e.mqtt)
}

func (e *env) command(ctx context.Context, script string) *exec.Cmd {
	c := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	c.Dir, c.Env = e.dir, e.environ
	c.WaitDelay = 5 * time.Second // a child left behind must not hold the output open
	return c
}

// run runs the block name and returns its output.
func (e *env) run(bs map[string]block, name string) string {
	t := e.t
	t.Helper()
	b, ok := bs[name]
	if !ok {
		t.Fatalf("no block marked <!-- doctest: %s --> in %v", name, documents)
	}
	if b.needsAWS {
		if _, err := exec.LookPath("aws"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s %s: the aws CLI is not installed (apt-get install awscli)", b.file, name)
			}
			t.Logf("SKIP %s %s: it needs the aws CLI (apt-get install awscli)", b.file, name)
			return ""
		}
	}
	e.ran[name] = true
	if b.background {
		e.start(b)
		return ""
	}
	// Only a guard against a hang: make demo builds three binaries from a
	// cold cache first, which took over 3 minutes on a loaded 2-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out, err := e.command(ctx, e.script(b.body)).CombinedOutput()
	if err != nil {
		t.Fatalf("%s, block %s failed: %v\n--- block:\n%s--- output:\n%s", b.file, name, err, e.script(b.body), out)
	}
	return string(out)
}

func (e *env) start(b block) {
	t := e.t
	t.Helper()
	var out bytes.Buffer
	c := e.command(context.Background(), "exec "+strings.TrimSpace(e.script(b.body)))
	c.Stdout, c.Stderr = &out, &out
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatalf("%s, block %s: %v", b.file, b.name, err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = c.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			t.Errorf("%s, block %s did not stop on SIGTERM", b.file, b.name)
			<-exited
		}
	})
	if b.ready == "" {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("%s, block %s exited: %v\n%s", b.file, b.name, waitErr, out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := e.command(ctx, e.script(b.ready)).Run()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, block %s: not ready (%s) after 30 s\n%s", b.file, b.name, b.ready, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// simEnv adds what iotsim env prints (the aws CLI's endpoint and
// credentials) to the blocks' environment.
func (e *env) simEnv() {
	e.t.Helper()
	out, err := e.command(context.Background(), e.script("bin/iotsim env --data-dir /tmp/sim")).Output()
	if err != nil {
		e.t.Fatalf("iotsim env: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(l, "export "), "=")
		if ok && strings.HasPrefix(l, "export ") {
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			} else {
				v = strings.Trim(v, "'")
			}
			e.environ = append(e.environ, k+"="+v)
		}
	}
}

func (e *env) read(path string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, strings.TrimPrefix(path, "/")))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// TestReadme follows README.md: iotsim by hand (its admin commands and the
// aws CLI), the agent by hand, the technician's commands, the line
// provisioning two boards, and the AWS set-up with the printed policy.
func TestReadme(t *testing.T) {
	e := newEnv(t)
	bs := blocks(t, e.root)
	e.run(bs, "iotsim-serve")
	out := e.run(bs, "iotsim-admin")
	if !strings.Contains(strings.ReplaceAll(out, " ", ""), `"armed":true`) {
		t.Errorf("iotsim shadow get after the desired update:\n%s", out)
	}
	if out := e.run(bs, "iotsim-aws"); out != "" && (!strings.Contains(out, "box-1") || !strings.Contains(strings.ReplaceAll(out, " ", ""), `"interval_s":10`)) {
		t.Errorf("aws CLI against iotsim:\n%s", out)
	}
	if out := e.run(bs, "iotsim-rules"); out != "" && !strings.Contains(out, `"ruleArn": "arn:aws:iot:us-east-1:123456789012:rule/chocolate_box_alarms"`) {
		t.Errorf("topic rule with the aws CLI:\n%s", out)
	}

	if out := e.run(bs, "iotsim-faults"); !strings.Contains(out, `"kind": "throttle-jobs"`) || !strings.Contains(out, `"cleared": 1`) {
		t.Errorf("iotsim fault commands:\n%s", out)
	}

	e.run(bs, "agent-thing")
	e.run(bs, "agent-run")
	out = e.run(bs, "technician")
	for _, want := range []string{
		"Connected   since",   // status
		"0 failed",            // diag: no check FAILed
		"PASS  subscriptions", // diag: what the agent did
		"bme280",              // sensors read
		`"iot:Connect"`,       // policy
		"client/${iot:Connection.Thing.ThingName}", // policy
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the technician's commands print no %q:\n%s", want, out)
		}
	}

	out = e.run(bs, "line")
	keys := map[string]string{}
	for _, n := range []string{"0001", "0002"} {
		sn := "box-" + n
		if !strings.Contains(out, `"thing_name": "`+sn+`"`) {
			t.Errorf("the line did not provision %s:\n%s", sn, out)
		}
		key := string(e.read("/tmp/box-" + n + "/identity/device.key"))
		if other, dup := keys[key]; dup {
			t.Errorf("%s and %s were provisioned with the same key", other, sn)
		}
		keys[key] = sn
		e.read("/tmp/box-" + n + "/identity/device.crt")
	}
	e.run(bs, "line-run")

	// The AWS set-up, rehearsed against iotsim as the README says: after
	// eval "$(bin/iotsim env --data-dir /tmp/sim)".
	e.simEnv()
	if e.run(bs, "aws-setup") != "" || e.ran["aws-setup"] {
		out, err := e.command(context.Background(), `aws iot list-attached-policies --output text --target "$(aws iot list-thing-principals --thing-name chocolate-box-2 --query 'principals[0]' --output text)"`).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "policy/chocolate-box") {
			t.Errorf("the printed policy is not attached to the new certificate: %v\n%s", err, out)
		}
	}
}

// TestQuickStart runs the README's quick start (make demo).
func TestQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("make demo builds and runs the demo: not with -short")
	}
	e := newEnv(t)
	out := e.run(blocks(t, e.root), "quick-start")
	if !strings.Contains(out, "alarm") {
		t.Errorf("make demo shows no alarm:\n%s", out)
	}
}

// TestManufacturing follows docs/manufacturing.md against iotsim: the
// line's claims, and JITP with the line's own CA and the policy the
// template names, then the agent with the certificate JITP registers.
func TestManufacturing(t *testing.T) {
	e := newEnv(t)
	bs := blocks(t, e.root)
	e.run(bs, "line-serve")
	e.run(bs, "line-claims")
	for _, f := range []string{"line-1.crt", "line-1.key", "root-ca.pem"} {
		e.read("/tmp/line/" + f)
	}
	e.simEnv()
	e.files("docs/manufacturing.md")
	e.run(bs, "jitp-policy")
	e.run(bs, "jitp")
	e.run(bs, "jitp-install")
	e.run(bs, "jitp-run")
	if !e.ran["jitp-run"] {
		return // no aws CLI
	}
	out, err := e.command(context.Background(), e.script("bin/iotagent status --json --config configs/chocolate-box.json --state-dir /tmp/jitp-state")).Output()
	if err != nil || !strings.Contains(string(out), `"thing": "box-0001"`) || strings.Contains(string(out), `"diagnosis"`) {
		t.Errorf("the JITP device under iotagent-device: %v\n%s", err, out)
	}
}

// TestCloudSide follows docs/cloud-side.md: the alarm rule's file with the
// aws CLI against iotsim, and the console's login link, which opens the
// console.
func TestCloudSide(t *testing.T) {
	e := newEnv(t)
	bs := blocks(t, e.root)
	if out, err := exec.Command("cp", "-r", filepath.Join(e.root, "docs"), e.dir).CombinedOutput(); err != nil {
		t.Fatalf("copy docs: %v\n%s", err, out)
	}
	e.run(bs, "cloud-serve")
	if out := e.run(bs, "cloud-rule"); e.ran["cloud-rule"] && !strings.Contains(out, "FROM 'alarms/+'") {
		t.Errorf("the rule of docs/cloud-side with the aws CLI:\n%s", out)
	}
	link := strings.TrimSpace(e.run(bs, "cloud-console"))
	if !strings.HasPrefix(link, "http://127.0.0.1:") || !strings.Contains(link, "/console?token=") {
		t.Fatalf("iotsim console printed %q, want the login link", link)
	}
	jar, _ := cookiejar.New(nil)
	resp, err := (&http.Client{Jar: jar, Timeout: time.Minute}).Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<title>iotsim console</title>") || strings.Contains(resp.Request.URL.String(), "token") {
		t.Errorf("the login link gave %s at %s:\n%s", resp.Status, resp.Request.URL, body)
	}
}
