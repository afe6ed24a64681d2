package agent_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/internal/logring"
	"github.com/iotagent/iotagent/sensors"
)

// apiSocket returns a socket path short enough for the kernel's limit.
func apiSocket(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ia")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "agent.sock")
}

// poll retries f until it succeeds, for state with no message to wait on.
func poll(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLocalAPI(t *testing.T) {
	sim := cloudtest.Start(t, "")
	d := newDevice(t, sim, "box-api")
	d.cfg.LocalAPI.Socket = apiSocket(t)
	ring := logring.New(50)
	level := new(slog.LevelVar)
	log := slog.New(ring.Handler(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: level})))
	a, err := agent.New(d.cfg, agent.Options{Logger: log, Level: level, Hardware: d.hw, Version: "test-api"})
	if err != nil {
		t.Fatal(err)
	}
	a.SetLogRing(ring)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, err := os.Stat(d.cfg.LocalAPI.Socket); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket still there after Run: %v", err)
		}
	}()
	c := localapi.NewClient(d.cfg.LocalAPI.Socket, 5*time.Second)
	bg := context.Background()

	var sh localapi.Shadow
	poll(t, "shadow in sync", func() error {
		sh = localapi.Shadow{}
		if err := c.Get(bg, localapi.SectionShadow, &sh); err != nil {
			return err
		}
		if !sh.InSync {
			return errors.New("not in sync")
		}
		return nil
	})
	if !sh.FetchedLive || sh.Version == 0 || sh.Reported["agent"].(map[string]any)["version"] != "test-api" {
		t.Errorf("shadow section %+v", sh)
	}

	var conn localapi.Connection
	if err := c.Get(bg, localapi.SectionConnection, &conn); err != nil || !conn.Connected || conn.ClientID != "box-api" {
		t.Errorf("connection %+v, %v", conn, err)
	}
	poll(t, "connected since", func() error {
		if err := c.Get(bg, localapi.SectionConnection, &conn); err != nil || conn.ConnectedSince.IsZero() {
			return errors.New("connected_since not set")
		}
		return nil
	})
	var id localapi.Identity
	if err := c.Get(bg, localapi.SectionIdentity, &id); err != nil || id.DaysLeft < 300 || id.Subject == "" || id.Error != "" {
		t.Errorf("identity %+v, %v", id, err)
	}
	var ob localapi.Outbox
	if err := c.Get(bg, localapi.SectionOutbox, &ob); err != nil || ob.MaxMessages != 10000 {
		t.Errorf("outbox %+v, %v", ob, err)
	}
	var ag localapi.Agent
	if err := c.Get(bg, localapi.SectionAgent, &ag); err != nil || ag.Version != "test-api" || ag.LogLevel != "info" || ag.PID != os.Getpid() || ag.Goroutines <= 0 {
		t.Errorf("agent %+v, %v", ag, err)
	}

	// sensors: the last values, then a live read
	d.env.Set(sensorsReading(24.25))
	var live localapi.Sensors
	if err := c.Do(bg, localapi.ActionReadSensors, nil, &live); err != nil || live.Source != "live" || live.Env == nil || live.Env.TemperatureC != 24.25 {
		t.Errorf("sensors.read %+v (env %+v), %v", live, live.Env, err)
	}
	var last localapi.Sensors
	if err := c.Get(bg, localapi.SectionSensors, &last); err != nil || last.Env == nil || last.Env.TemperatureC != 21.5 || len(last.Inputs) != 2 {
		t.Errorf("sensors (last values) %+v, %v; want 21.5 from the agent's own read", last, err)
	}

	// log level until restart, and the log ring
	var lvl localapi.LogLevel
	if err := c.Do(bg, localapi.ActionLogLevel, localapi.LogLevel{Level: "debug"}, &lvl); err != nil || level.Level() != slog.LevelDebug {
		t.Errorf("log.level: %v, level now %v", err, level.Level())
	}
	var bad *localapi.Error
	if err := c.Do(bg, localapi.ActionLogLevel, localapi.LogLevel{Level: "loud"}, nil); !errors.As(err, &bad) || bad.Status != 400 {
		t.Errorf("log.level loud: %v, want 400", err)
	}
	var logs localapi.Logs
	if err := c.Get(bg, localapi.SectionLogs, &logs); err != nil || !slices.ContainsFunc(logs.Lines, func(l string) bool { return strings.Contains(l, "log level set through the local API") }) {
		t.Errorf("logs %v, %v", logs.Lines, err)
	}

	// a desired value the agent cannot apply leaves a pending delta
	updateDesired(t, sim, "box-api", `{"outputs":{"siren":true}}`)
	poll(t, "pending delta", func() error {
		sh = localapi.Shadow{}
		if err := c.Get(bg, localapi.SectionShadow, &sh); err != nil {
			return err
		}
		if sh.InSync || !slices.Contains(sh.Pending, "outputs.siren") || len(sh.Problems) == 0 {
			return errors.New("no pending delta yet")
		}
		return nil
	})
	var ok localapi.Done
	if err := c.Do(bg, localapi.ActionResyncShadow, nil, &ok); err != nil || !ok.OK {
		t.Errorf("shadow.resync %+v, %v", ok, err)
	}
	var js localapi.Jobs
	if err := c.Get(bg, localapi.SectionJobs, &js); err != nil || !js.Enabled || !slices.Contains(js.Handlers, "download-file") {
		t.Errorf("jobs: %+v, %v; want enabled with download-file", js, err)
	}
	var ot localapi.OTA
	if err := c.Get(bg, localapi.SectionOTA, &ot); err != nil || ot.Enabled || ot.Version == "" {
		t.Errorf("ota: %+v, %v; want disabled, with the version", ot, err)
	}

	// a second agent on the same socket goes on without the API
	if _, err := localapi.Listen(d.cfg.LocalAPI.Socket, ""); !errors.Is(err, localapi.ErrInUse) {
		t.Errorf("Listen on the live socket: %v, want ErrInUse", err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func sensorsReading(c float64) sensors.Reading {
	return sensors.Reading{TemperatureC: c, HumidityPct: 40, PressureKPa: 101.3}
}
