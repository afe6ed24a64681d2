// Command demo runs the chocolate box end to end on this machine: iotsim in
// a temporary data dir, a thing and its certificate made with the real
// `iotsim thing create`, the real iotagent binary with simulated sensors,
// the alarm armed through desired state, a motion event, the alarm message
// and the final shadow document. `make demo` runs it.
//
// With --console (`make demo-console`) it is the whole chocolate security
// system: iotsim gets the topic rule of docs/cloud-side (alarms republished
// to notifications/<box>) plus an http action posting them to a local
// webhook that stands in for the backend's function; the web console's URL
// is printed; the alarm is armed through the console, as a person clicking
// Arm would, and the demo checks that the alarm reaches the console's live
// view and the webhook. --keep-running leaves it all running until Ctrl-C.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/broker"
)

const thing = "chocolate-box-1"

// agentBin and agentExec choose how the agent runs (--agent, --agent-exec):
// make test-arm runs an arm64 iotagent under qemu-user against this
// machine's iotsim.
var agentBin, agentExec string

// The cloud side (--console).
var (
	withConsole, keepRunning bool
	consoleAddr, ruleFile    string
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the iotagent and iotsim binaries")
	cfg := flag.String("config", "configs/chocolate-box.json", "agent config (the simulated chocolate box)")
	keep := flag.Bool("keep", false, "keep the temporary directory for inspection")
	flag.StringVar(&agentBin, "agent", "", "iotagent binary to run (default BIN/iotagent), e.g. dist/iotagent-linux-arm64")
	flag.StringVar(&agentExec, "agent-exec", "", "run the agent through this program, e.g. qemu-aarch64-static")
	flag.BoolVar(&withConsole, "console", false, "the cloud side too: the alarm rule, a local webhook and the web console (make demo-console)")
	flag.StringVar(&consoleAddr, "console-addr", "127.0.0.1:0", "with --console: the web console's address")
	flag.StringVar(&ruleFile, "rule", "docs/cloud-side/chocolate-box-alarms.json", "with --console: the topic rule (AWS's create-topic-rule payload)")
	flag.BoolVar(&keepRunning, "keep-running", false, "with --console: keep iotsim, the agent and the webhook running after the scripted run, until Ctrl-C")
	flag.Parse()
	if err := run(*bin, *cfg, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(bin, cfg string, keep bool) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bin, _ = filepath.Abs(bin)
	tmp, err := os.MkdirTemp("", "iotagent-demo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("keeping", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	simDir, agentDir := filepath.Join(tmp, "iotsim"), filepath.Join(tmp, "agent")

	step("starting iotsim in %s", simDir)
	sim, err := cloud.Start(cloud.Options{DataDir: simDir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), ConsoleAddr: consoleAddr, NoConsole: !withConsole})
	if err != nil {
		return err
	}
	defer sim.Close()
	ep := sim.Endpoint()
	fmt.Printf("    mqtt %s  http %s\n", ep.MQTTEndpoint, ep.HTTPEndpoint)
	var cs *cloudSide
	if withConsole {
		if cs, err = startCloudSide(ctx, sim); err != nil {
			return err
		}
		defer cs.close()
	}

	// Watch what the device sends, as the AWS IoT console's test client would.
	alarms := make(chan []byte, 8)
	reported := make(chan map[string]any, 64)
	var telemetry atomic.Int64
	sim.Broker().Handle("alarms/"+thing, func(_ *broker.Principal, _ string, p []byte) { alarms <- p })
	sim.Broker().Handle("telemetry/"+thing, func(*broker.Principal, string, []byte) { telemetry.Add(1) })
	sim.Broker().Handle("$aws/things/"+thing+"/shadow/update", func(_ *broker.Principal, _ string, p []byte) {
		var u struct {
			State struct {
				Reported map[string]any `json:"reported"`
			} `json:"state"`
		}
		if json.Unmarshal(p, &u) == nil && u.State.Reported != nil {
			select {
			case reported <- u.State.Reported:
			default:
			}
		}
	})

	step("iotsim thing create %s", thing)
	idDir := filepath.Join(agentDir, "identity")
	if out, err := iotsim(ctx, bin, simDir, "thing", "create", thing, "--cert-out", idDir); err != nil {
		return err
	} else {
		fmt.Print("    ", out)
	}

	step("starting iotagent with %s (simulated sensors)", cfg)
	host, port, _ := net.SplitHostPort(ep.MQTTEndpoint)
	logPath := filepath.Join(tmp, "iotagent.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	if agentBin == "" {
		agentBin = filepath.Join(bin, "iotagent")
	}
	argv := []string{agentBin, "run", "--config", cfg, "--state-dir", agentDir,
		"--endpoint", host, "--port", port, "--root-ca", filepath.Join(idDir, "root-ca.pem"),
		"--cert", filepath.Join(idDir, thing+".crt"), "--key", filepath.Join(idDir, thing+".key")}
	if agentExec != "" {
		argv = append([]string{agentExec}, argv...)
	}
	agent := exec.Command(argv[0], argv[1:]...)
	agent.Stdout, agent.Stderr = logFile, logFile
	if keepRunning {
		// Ctrl-C in the terminal is the demo's to handle: it stops the
		// agent with SIGTERM, as in the scripted run.
		agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := agent.Start(); err != nil {
		return err
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Wait() }()
	defer func() {
		if agent.ProcessState == nil {
			_ = agent.Process.Kill()
		}
	}()
	fail := func(err error) error {
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w\n--- iotagent log ---\n%s", err, log)
	}

	wait := func(what string, ok func(map[string]any) bool) error {
		for {
			select {
			case r := <-reported:
				if ok(r) {
					return nil
				}
			case err := <-agentDone:
				return fail(fmt.Errorf("iotagent exited while waiting for %s: %v", what, err))
			case <-ctx.Done():
				return fail(fmt.Errorf("timed out waiting for %s", what))
			}
		}
	}
	if err := wait("the first shadow report", func(r map[string]any) bool { return r["agent"] != nil }); err != nil {
		return err
	}
	fmt.Printf("    connected and shadow synced after %s\n", time.Since(start).Round(time.Millisecond))

	if cs != nil {
		step("arming the alarm in the web console (as clicking Arm does)")
		if err := cs.arm(ctx); err != nil {
			return err
		}
	} else {
		step("arming the alarm through desired state")
		if _, err := iotsim(ctx, bin, simDir, "shadow", "update", thing, `{"state":{"desired":{"alarm":{"armed":true}}}}`); err != nil {
			return err
		}
	}
	if err := wait("the agent to report armed", func(r map[string]any) bool {
		a, _ := r["alarm"].(map[string]any)
		return a != nil && a["armed"] == true
	}); err != nil {
		return err
	}
	fmt.Println("    the agent reports alarm.armed = true")

	step("motion in front of the box (simulated PIR on GPIO4)")
	if err := writeFIFO(ctx, filepath.Join(agentDir, "sim", "motion"), "1\n"); err != nil {
		return fail(err)
	}
	var alarm []byte
	select {
	case alarm = <-alarms:
	case <-ctx.Done():
		return fail(errors.New("timed out waiting for the alarm message"))
	}
	fmt.Printf("    alarm on alarms/%s: %s\n", thing, alarm)
	if cs != nil {
		if err := cs.check(ctx); err != nil {
			return fail(err)
		}
	}
	if err := wait("the agent to report the alarm", func(r map[string]any) bool {
		a, _ := r["alarm"].(map[string]any)
		return a != nil && a["state"] == "on"
	}); err != nil {
		return err
	}

	step("final shadow (iotsim shadow get %s)", thing)
	doc, err := iotsim(ctx, bin, simDir, "shadow", "get", thing)
	if err != nil {
		return err
	}
	// The state and version; the per-key metadata timestamps are left out.
	var full struct {
		State   json.RawMessage `json:"state"`
		Version int64           `json:"version"`
	}
	if err := json.Unmarshal([]byte(doc), &full); err != nil {
		return fmt.Errorf("shadow document: %w", err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, full.State, "    ", "  "); err != nil {
		return fmt.Errorf("shadow document: %w", err)
	}
	fmt.Printf("    version %d, state:\n    %s\n", full.Version, pretty.String())

	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", agent.Process.Pid)); err == nil {
		for line := range strings.Lines(string(status)) {
			if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
				fmt.Printf("    %s %s\n", filepath.Base(argv[0]), strings.Join(strings.Fields(line), " "))
			}
		}
	}

	if cs != nil && keepRunning {
		fmt.Printf("\nstill running (--keep-running): open the console at\n\n    %s\n\n"+
			"arm, disarm and watch alarms/# there; write 1 to %s for motion. Ctrl-C stops.\n",
			ep.ConsoleURL, filepath.Join(agentDir, "sim", "motion"))
		cancel() // the scripted run's deadline no longer applies
		stop, stopCancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		select {
		case <-stop.Done():
		case err := <-agentDone:
			stopCancel()
			return fail(fmt.Errorf("iotagent exited: %v", err))
		}
		stopCancel()
	}

	step("stopping")
	_ = agent.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-agentDone:
		if err != nil {
			return fail(fmt.Errorf("iotagent did not stop cleanly: %v", err))
		}
	case <-time.After(10 * time.Second):
		return fail(errors.New("iotagent did not stop within 10s of SIGTERM"))
	}
	fmt.Printf("\ndemo passed in %s: thing created, agent connected over mutual TLS, alarm armed through the shadow, motion raised an alarm (%d telemetry messages seen)\n",
		time.Since(start).Round(time.Millisecond), telemetry.Load())
	if cs != nil {
		fmt.Println("cloud side: the rule republished the alarm to notifications/" + thing + " and posted it to the webhook; the console's live view showed it")
	}
	return nil
}

func iotsim(ctx context.Context, bin, dataDir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "iotsim"), append(args, "--data-dir", dataDir)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("iotsim %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// writeFIFO writes to the simulated sensor's named pipe once the agent has
// created it.
func writeFIFO(ctx context.Context, path, s string) error {
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the agent never created %s", path)
		case <-time.After(20 * time.Millisecond):
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s)
	return err
}
