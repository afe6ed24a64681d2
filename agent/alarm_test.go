package agent_test

import (
	"testing"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// An alarm does not wait behind the environment read: a forced-mode
// BME280 measurement takes about 26 ms, and a slow bus longer. Here the
// read does not end at all until the alarm has been delivered.
func TestAlarmDoesNotWaitForEnvRead(t *testing.T) {
	sim := cloudtest.Start(t, "")
	obs := observe(sim, "box-slow-env")
	d := newDevice(t, sim, "box-slow-env")
	started, release := d.env.Block()
	d.cfg.Alarm.Armed = true
	d.start(t, agent.Options{})
	t.Cleanup(release) // before the agent stops: cleanups run last first

	<-started // the first telemetry read is under way, and stays so
	waitFor(t, "report", obs.reported, func(r map[string]any) bool { return path(r, "alarm.armed") == true })
	d.motion.Trigger(true)
	a := waitFor(t, "alarm while the environment read hangs", obs.alarms, func(map[string]any) bool { return true })
	if a["sensor"] != "motion" || a["event"] != "motion" {
		t.Errorf("alarm = %v", a)
	}
	if len(obs.telemetry) != 0 {
		t.Errorf("telemetry sent while its read was blocked: %v", <-obs.telemetry)
	}

	release()
	tel := waitFor(t, "telemetry after the read ended", obs.telemetry, func(map[string]any) bool { return true })
	if path(tel, "sensors.bme280.temperature_c") != 21.5 || path(tel, "sensors.motion.active") != true {
		t.Errorf("telemetry = %v", tel)
	}
}
