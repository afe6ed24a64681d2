package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/internal/logring"
	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sensortest"

	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/provisioning"
)

func TestAfterNoJobsTmp(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "box")
	arn := certARNOf(t, sim, "box")
	const noJobs = `{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
	  {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":["arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*","arn:aws:iot:*:*:topic/telemetry/${iot:Connection.Thing.ThingName}"]},
	  {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"}]}`
	sim.Registry().CreatePolicy("no-jobs", noJobs)
	sim.Registry().DetachPolicy(provisioning.DevicePolicyName, arn)
	sim.Registry().AttachPolicy("no-jobs", arn)
	runAgentForDefault(t, b)
	time.Sleep(30 * time.Second)
	out, _ := iotagent("status", "--config", b.cfgPath)
	t.Logf("status after 30 s:\n%s", out)
	out, _ = iotagent("diag", "--config", b.cfgPath)
	t.Logf("diag:\n%s", out)
}
func runAgentForDefault(t *testing.T, b *box) (stop func()) {
	t.Helper()
	cfg, err := loadConfig(b.cfgPath, nil)
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
		Hardware: hw, Version: "cli-test"})
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
