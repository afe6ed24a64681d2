package agent_test

import (
	"strings"
	"testing"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// A desired document with a value Go cannot hold applies every key it can
// and names the bad one in last_error: in the get/accepted that the agent
// reads at start, and in a delta.
func TestDesiredValuesGoCannotHold(t *testing.T) {
	sim := cloudtest.Start(t, "")
	obs := observe(sim, "box-evil")
	d := newDevice(t, sim, "box-evil")
	d.cfg.Alarm.Armed = true
	updateDesired(t, sim, "box-evil", `{"evil":1e400,"alarm":{"armed":false}}`)
	d.start(t, agent.Options{})

	lastError := func(r map[string]any) string { s, _ := r["last_error"].(string); return s }
	r := waitFor(t, "the disarm applied from get/accepted", obs.reported, func(r map[string]any) bool {
		return path(r, "alarm.armed") == false
	})
	if got := lastError(r); got != "desired.evil: unknown setting" {
		t.Errorf("last_error = %q, want the refused key named", got)
	}
	if d.agent.Status().Armed {
		t.Error("the agent is still armed")
	}

	updateDesired(t, sim, "box-evil", `{"telemetry":{"interval_s":18446744073709551616},"alarm":{"armed":true}}`)
	r = waitFor(t, "the arm applied from a delta", obs.reported, func(r map[string]any) bool {
		return path(r, "alarm.armed") == true
	})
	if got := lastError(r); !strings.Contains(got, "desired.telemetry.interval_s: want a whole number") || path(r, "telemetry.interval_s") != 3600.0 {
		t.Errorf("last_error = %q, interval %v; want interval_s refused and left at 3600", got, path(r, "telemetry.interval_s"))
	}
}
