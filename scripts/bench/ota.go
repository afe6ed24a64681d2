package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/sigv4"
	"github.com/iotagent/iotagent/ota"
	"github.com/iotagent/iotagent/ota/otatest"
)

// otaThing is the device the OTA step updates.
const otaThing = "ota-box-1"

// Versions the OTA step builds and updates between.
const (
	otaFrom = "1.0.0"
	otaTo   = "1.1.0"
)

// otaUpdate: the real agent under ota/otatest's Supervisor (prestart from
// the committed slot, run from the current one, restart on exit,
// sd_notify) is updated from otaFrom to otaTo by a job; the time from
// CreateJob to the SUCCEEDED update at the broker, and the peak RSS of the
// agent process that downloads and stages the artifact.
func otaUpdate(ctx context.Context, o *opts, tmp string, add func(Metric)) error {
	dir := filepath.Join(tmp, "ota")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Two release builds (static, -trimpath, -s -w) stamped with their
	// versions.
	bld := otatest.NewBuilder(dir)
	t0 := time.Now()
	from, err := bld.Agent(otaFrom, "")
	if err != nil {
		return err
	}
	to, err := bld.Agent(otaTo, "")
	if err != nil {
		return err
	}
	buildTime := time.Since(t0)
	artifact, err := os.ReadFile(to)
	if err != nil {
		return err
	}
	pub, sec, err := ota.GenerateKey(nil, "")
	if err != nil {
		return err
	}
	sig, err := ota.Sign(sec, "", bytes.NewReader(artifact), "iotagent", time.Now(), ota.Meta{Version: otaTo, Arch: runtime.GOARCH})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(artifact)

	sim, err := cloud.Start(cloud.Options{DataDir: filepath.Join(dir, "iotsim"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		return fmt.Errorf("start iotsim: %w", err)
	}
	defer sim.Close()
	var (
		mu        sync.Mutex
		succeeded = make(chan time.Time, 1)
		progress  []string
	)
	sim.Broker().Handle("$aws/things/"+otaThing+"/jobs/+/update", func(_ *broker.Principal, _ string, p []byte) {
		var u struct {
			Status        string            `json:"status"`
			StatusDetails map[string]string `json:"statusDetails"`
		}
		if json.Unmarshal(p, &u) != nil {
			return
		}
		now := time.Now()
		mu.Lock()
		progress = append(progress, fmt.Sprintf("%s %v", u.Status, u.StatusDetails))
		mu.Unlock()
		if u.Status == "SUCCEEDED" {
			select {
			case succeeded <- now:
			default:
			}
		}
	})
	cert, key, err := sim.CreateThing(otaThing)
	if err != nil {
		return err
	}
	idDir := filepath.Join(dir, "identity")
	if err := cloud.WriteCredentials(idDir, otaThing, cert, key, sim.CA().CertPEM); err != nil {
		return err
	}
	ep := sim.Endpoint()
	host, port, _ := net.SplitHostPort(ep.MQTTEndpoint)

	// The artifact into iotsim's S3 store, over HTTP.
	objURL := ep.HTTPEndpoint + "/s3/bench-ota/iotagent-" + otaTo
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, objURL, bytes.NewReader(artifact))
	if err != nil {
		return err
	}
	sigv4.Sign(req, sigv4.PayloadHash(artifact), sim.Credentials(), ep.Region, "s3", time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("upload artifact: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upload artifact: HTTP %d", resp.StatusCode)
	}

	// The agent: state dir initialised with otaFrom committed, config =
	// the agent steps' plus ota.
	stateDir := filepath.Join(dir, "state")
	if err := ota.Init(stateDir, from, otaFrom); err != nil {
		return err
	}
	config := filepath.Join(dir, "config.json")
	if err := writeAgentConfig(o.config, config, func(c map[string]any) {
		issueConfig(c)
		c["thing_name"] = otaThing
		s := section(c, "ota")
		s["enabled"] = true
		s["trusted_keys"] = []string{publicKeyLine(pub)}
		s["allowed_hosts"] = []string{"127.0.0.1"}
	}); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(tmp, "iotagent-ota.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	sup, err := otatest.New(otatest.Options{
		StateDir: stateDir,
		Args: []string{"--config", config, "--state-dir", stateDir, "--endpoint", host, "--port", port,
			"--root-ca", filepath.Join(idDir, "root-ca.pem"), "--cert", filepath.Join(idDir, otaThing+".crt"), "--key", filepath.Join(idDir, otaThing+".key")},
		Env:          append(os.Environ(), o.agentEnv...),
		StartTimeout: 60 * time.Second,
		Output:       logf,
	})
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	supDone := make(chan error, 1)
	go func() { supDone <- sup.Run(sctx) }()
	defer func() { stop(); <-supDone }()

	wctx, cancel := context.WithTimeout(ctx, o.otaLimit)
	defer cancel()
	ready, err := sup.Wait(wctx, 0, otatest.Is(otatest.Ready))
	if err != nil {
		return fmt.Errorf("the agent (%s) never said READY=1: %w; events: %v", otaFrom, err, sup.Events())
	}
	pid := sup.PID()
	before, _ := readStatusField(pid, "VmRSS")

	// Peak RSS of the process that downloads and stages: its VmHWM, read
	// every 20 ms until it exits (VmHWM only grows; the last read is
	// within 20 ms of the exit).
	hwm := make(chan int64, 1)
	go func() {
		var last int64
		for {
			v, err := readStatusField(pid, "VmHWM")
			if err != nil {
				hwm <- last
				return
			}
			last = v
			time.Sleep(20 * time.Millisecond)
		}
	}()

	doc := fmt.Sprintf(`{"operation":"ota","version":%q,"file":{"url":"${aws:iot:s3-presigned-url:%s}","size":%d,"sha256":%q,"signature":%s,"arch":%q}}`,
		otaTo, objURL, len(artifact), hex.EncodeToString(sum[:]), jsonQuote(string(sig)), runtime.GOARCH)
	jobID := fmt.Sprintf("bench-ota-%d", time.Now().UnixNano())
	start := time.Now()
	if err := restCall(ctx, ep, http.MethodPut, "/jobs/"+jobID, map[string]any{
		"targets":  []string{"arn:aws:iot:" + cloud.DefaultRegion + ":" + cloud.DefaultAccount + ":thing/" + otaThing},
		"document": doc, "presignedUrlConfig": map[string]any{"expiresInSec": 3600},
	}, nil); err != nil {
		return fmt.Errorf("CreateJob: %w", err)
	}
	exited, err := sup.Wait(wctx, ready.Seq, otatest.Is(otatest.Exited))
	if err != nil {
		return fmt.Errorf("the agent never restarted into %s: %w; events: %v\n%s", otaTo, err, sup.Events(), progressText(&mu, &progress))
	}
	staged := exited.At.Sub(start)
	var done time.Time
	select {
	case done = <-succeeded:
	case <-wctx.Done():
		return fmt.Errorf("no SUCCEEDED within %v: %w; events: %v; updates: %s", o.otaLimit, wctx.Err(), sup.Events(), progressText(&mu, &progress))
	}
	peak := <-hwm
	newStart, err := sup.Wait(wctx, exited.Seq, otatest.Is(otatest.Started))
	if err != nil {
		return err
	}
	if newStart.Version != otaTo {
		return fmt.Errorf("after the update the supervisor started version %q, want %s", newStart.Version, otaTo)
	}
	total := done.Sub(start)
	note := fmt.Sprintf("%.1f MiB artifact (stripped amd64 iotagent %s, minisign-signed, in iotsim's S3 store), CreateJob over REST with a presigned-URL placeholder "+
		"→ the agent's SUCCEEDED update at the broker; the agent runs under ota/otatest's Supervisor (prestart from the committed slot, run from the current one, "+
		"restart on exit, sd_notify); builds took %v", float64(len(artifact))/(1<<20), otaTo, buildTime.Round(time.Second))
	add(Metric{Step: "ota", Name: "job created → SUCCEEDED", Unit: "s", Samples: []float64{total.Seconds()}, Note: note})
	add(Metric{Step: "ota", Name: "job created → old agent exits (downloaded, verified, staged)", Unit: "s", Samples: []float64{staged.Seconds()},
		Note: fmt.Sprintf("then the restart, prestart (trial) and the new version's sync and commit took %v", done.Sub(exited.At).Round(time.Millisecond))})
	add(Metric{Step: "ota", Name: "peak RSS of the agent downloading and staging", Unit: "MiB", Samples: []float64{float64(peak) / 1024},
		Note: fmt.Sprintf("VmHWM from /proc/PID/status of the agent process (the supervisor's start before the update), read every 20 ms until it exited; its VmRSS before the job %.1f MiB",
			float64(before)/1024)})
	return nil
}

// publicKeyLine is the key line ("RW…") of a minisign public key file.
func publicKeyLine(pub []byte) string {
	lines := strings.Split(strings.TrimSpace(string(pub)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// jsonQuote is s as a JSON string.
func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func progressText(mu *sync.Mutex, p *[]string) string {
	mu.Lock()
	defer mu.Unlock()
	if len(*p) == 0 {
		return "(no job updates from the agent)"
	}
	return strings.Join(*p, "; ")
}
