package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/cloud/sigv4"
)

// thing is the device the run drives; observerName the observer's thing.
const (
	thing        = "chocolate-box-1"
	observerName = "chaos-observer"
	bucket       = "chaos-files"
)

// proc is a program the run started, its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func start(name, logPath string, argv ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive returns an error when the program has exited.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); its log ends:\n%s", p.name, p.err, p.tail(3000))
	default:
		return nil
	}
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > n {
		b = append([]byte("…"), b[len(b)-n:]...)
	}
	return string(b)
}

// stop sends SIGTERM and waits up to limit; a program that does not exit,
// or exits with an error, is an error (it is then killed).
func (p *proc) stop(limit time.Duration) error {
	select {
	case <-p.done:
		return p.alive()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM", p.name, p.err)
		}
		return nil
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, limit)
	}
}

// env is iotsim serve, the agent and the observer, set up.
type env struct {
	dir      string
	sim      *proc
	ep       cloud.Endpoint
	cli      *api.Client
	agent    *proc
	stateDir string
	dlDir    string
	local    *localapi.Client
	obs      *observer
	objURL   string
	objSHA   string
}

// setUp starts iotsim serve in dir, makes the thing and the observer,
// uploads the file the download jobs fetch, sets the first desired state
// and starts the agent; it returns once the agent has synced its shadow.
func setUp(ctx context.Context, o opts, dir string, desired map[string]any) (*env, error) {
	e := &env{dir: dir}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	simDir := filepath.Join(dir, "iotsim")
	e.sim, err = start("iotsim", filepath.Join(dir, "iotsim.log"), filepath.Join(bin, "iotsim"), "serve",
		"--data-dir", simDir, "--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if err != nil {
		return e, err
	}
	if err := poll(ctx, 60*time.Second, "iotsim's endpoint.json", func() (bool, error) {
		ep, err := cloud.ReadEndpoint(simDir)
		if err == nil {
			e.ep = ep
			return true, nil
		}
		return false, e.sim.alive()
	}); err != nil {
		return e, err
	}
	e.cli = e.ep.Client()

	idDir := filepath.Join(dir, "identity")
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "iotsim"), "thing", "create", thing, "--cert-out", idDir,
		"--data-dir", simDir).CombinedOutput(); err != nil {
		return e, fmt.Errorf("iotsim thing create: %v\n%s", err, out)
	}
	if e.obs, err = observe(ctx, e.ep, e.cli, observerName, thing); err != nil {
		return e, err
	}
	body := []byte("praline recipe, fetched by every download-file job of the chaos run\n")
	if e.objURL, err = putObject(ctx, e.ep, bucket, "recipes/praline.txt", body); err != nil {
		return e, err
	}
	e.objSHA = sha256Hex(body)
	if err := e.setDesired(ctx, desired); err != nil {
		return e, err
	}

	e.stateDir = filepath.Join(dir, "agent")
	e.dlDir = filepath.Join(dir, "files")
	if err := os.MkdirAll(e.dlDir, 0o755); err != nil {
		return e, err
	}
	cfgPath, socket, err := agentConfig(o.config, dir, e.stateDir, e.dlDir)
	if err != nil {
		return e, err
	}
	e.local = localapi.NewClient(socket, 5*time.Second)
	host, port, _ := net.SplitHostPort(e.ep.MQTTEndpoint)
	e.agent, err = start("iotagent", filepath.Join(dir, "iotagent.log"), filepath.Join(bin, "iotagent"), "run",
		"--config", cfgPath, "--state-dir", e.stateDir, "--endpoint", host, "--port", port,
		"--root-ca", filepath.Join(idDir, "root-ca.pem"), "--cert", filepath.Join(idDir, thing+".crt"),
		"--key", filepath.Join(idDir, thing+".key"))
	if err != nil {
		return e, err
	}
	if err := poll(ctx, 60*time.Second, "the agent's first shadow sync", func() (bool, error) {
		if err := e.agent.alive(); err != nil {
			return false, err
		}
		var sh localapi.Shadow
		if err := e.local.Get(ctx, localapi.SectionShadow, &sh); err != nil {
			return false, nil // the local API is not up yet
		}
		return sh.Synced, nil
	}); err != nil {
		return e, err
	}
	return e, nil
}

// tearDown stops what setUp started; the agent must stop cleanly.
func (e *env) tearDown() error {
	var errs []error
	if e.agent != nil {
		errs = append(errs, e.agent.stop(20*time.Second))
	}
	if e.obs != nil {
		e.obs.close()
	}
	if e.sim != nil {
		errs = append(errs, e.sim.stop(20*time.Second))
	}
	return errors.Join(errs...)
}

// agentConfig writes the agent's config: the config file the run starts
// from, with the state dir, the local API socket, jobs (download-file into
// dlDir) and Device Defender on, and short MQTT timeouts so that a fault
// class settles in seconds (production keeps the defaults).
func agentConfig(base, dir, stateDir, dlDir string) (path, socket string, err error) {
	b, err := os.ReadFile(base)
	if err != nil {
		return "", "", err
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return "", "", fmt.Errorf("%s: %w", base, err)
	}
	socket = filepath.Join(dir, "iotagent.sock")
	set := func(section string, kv map[string]any) {
		m, _ := c[section].(map[string]any)
		if m == nil {
			m = map[string]any{}
			c[section] = m
		}
		for k, v := range kv {
			m[k] = v
		}
	}
	c["thing_name"] = thing
	c["state_dir"] = stateDir
	set("localapi", map[string]any{"enabled": true, "socket": socket})
	set("jobs", map[string]any{"enabled": true, "download_dirs": []string{dlDir}})
	set("defender", map[string]any{"enabled": true, "interval_s": 30})
	set("mqtt", map[string]any{"keepalive_s": 30, "connect_timeout_s": 5, "backoff_max_s": 2, "ack_timeout_s": 5})
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, "iotagent.json")
	return path, socket, os.WriteFile(path, out, 0o600)
}

// putObject stores body in iotsim's S3 store, signed with the endpoint's
// credentials, and returns the object's URL.
func putObject(ctx context.Context, ep cloud.Endpoint, bucket, key string, body []byte) (string, error) {
	u := ep.HTTPEndpoint + "/s3/" + bucket + "/" + key
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	sigv4.Sign(req, sigv4.PayloadHash(body), sigv4.Credentials{AccessKeyID: ep.AWSAccessKeyID, SecretAccessKey: ep.AWSSecretAccessKey},
		ep.Region, "s3", time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("upload %s: %w", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("upload %s: HTTP %d", u, resp.StatusCode)
	}
	return u, nil
}

// setDesired sets desired state through UpdateThingShadow.
func (e *env) setDesired(ctx context.Context, desired map[string]any) error {
	doc, err := json.Marshal(map[string]any{"state": map[string]any{"desired": desired}})
	if err != nil {
		return err
	}
	if _, err := e.cli.UpdateThingShadow(ctx, thing, "", doc); err != nil {
		return fmt.Errorf("UpdateThingShadow: %w", err)
	}
	return nil
}

// converged reports whether the shadow has no delta and reports every
// value of desired; the string says what differs.
func (e *env) converged(ctx context.Context, desired map[string]any) (bool, string, error) {
	b, err := e.cli.GetThingShadow(ctx, thing, "")
	if err != nil {
		return false, "", fmt.Errorf("GetThingShadow: %w", err)
	}
	var doc struct {
		State struct {
			Reported map[string]any `json:"reported"`
			Delta    map[string]any `json:"delta"`
		} `json:"state"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return false, "", fmt.Errorf("shadow document: %w", err)
	}
	var diffs []string
	if len(doc.State.Delta) > 0 {
		d, _ := json.Marshal(doc.State.Delta)
		diffs = append(diffs, "delta "+string(d))
	}
	diffs = append(diffs, differences("", desired, doc.State.Reported)...)
	return len(diffs) == 0, strings.Join(diffs, "; "), nil
}

// differences lists the leaves of want that got lacks or holds otherwise
// (numbers compare as float64, as JSON decodes them).
func differences(prefix string, want, got map[string]any) []string {
	var out []string
	for k, w := range want {
		g := got[k]
		if wm, ok := w.(map[string]any); ok {
			gm, _ := g.(map[string]any)
			out = append(out, differences(prefix+k+".", wm, gm)...)
			continue
		}
		if !sameJSON(w, g) {
			out = append(out, fmt.Sprintf("%s%s: reported %v, desired %v", prefix, k, g, w))
		}
	}
	return out
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	var av any
	_ = json.Unmarshal(x, &av)
	y, _ := json.Marshal(b)
	var bv any
	_ = json.Unmarshal(y, &bv)
	return fmt.Sprint(av) == fmt.Sprint(bv)
}

// createJob queues a job for the thing through CreateJob.
func (e *env) createJob(ctx context.Context, id, document string) error {
	in := map[string]any{"targets": []string{"arn:aws:iot:" + e.ep.Region + ":" + cloud.DefaultAccount + ":thing/" + thing},
		"document": document, "presignedUrlConfig": map[string]any{"expiresInSec": 3600}}
	if err := e.cli.Call(ctx, "iot", http.MethodPut, "/jobs/"+id, nil, in, nil); err != nil {
		return fmt.Errorf("CreateJob %s: %w", id, err)
	}
	return nil
}

// jobStatus is a job execution's status and details (DescribeJobExecution).
func (e *env) jobStatus(ctx context.Context, id string) (string, map[string]string, error) {
	var out struct {
		Execution struct {
			Status        string `json:"status"`
			StatusDetails struct {
				DetailsMap map[string]string `json:"detailsMap"`
			} `json:"statusDetails"`
		} `json:"execution"`
	}
	if err := e.cli.Call(ctx, "iot", http.MethodGet, "/things/"+thing+"/jobs/"+id, nil, nil, &out); err != nil {
		return "", nil, fmt.Errorf("DescribeJobExecution %s: %w", id, err)
	}
	return out.Execution.Status, out.Execution.StatusDetails.DetailsMap, nil
}

// poll calls cond every 50 ms until it holds, returns an error, or limit
// passes.
func poll(ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: not within %s", what, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
