package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/agent/config"
)

// An old config (the fixed "sensors" section) still runs, as the chocolate
// box's parts, and the agent says at start that it is deprecated and where
// the migration is; a config in parts says nothing.
func TestLegacyConfigLogsDeprecation(t *testing.T) {
	for _, legacy := range []bool{true, false} {
		cfg := config.Default()
		cfg.ThingName, cfg.MQTT.Endpoint, cfg.MQTT.RootCA = "box", "localhost", "/dev/null"
		cfg.Identity.Cert, cfg.Identity.Key = "/nonexistent/device.crt", "/nonexistent/device.key"
		cfg.StateDir = t.TempDir()
		if legacy {
			cfg.Sensors.Motion = &config.Input{Driver: "sim", Pull: "down", DebounceMs: 50, SimFIFO: "/run/m"}
			cfg.Sensors.Outputs = []config.Output{{Name: "led", Driver: "sim"}}
		} else {
			cfg.Parts = map[string]config.Part{"motion": {Type: config.TypeInput, Role: config.RoleAlarm, Sim: true, SimFIFO: "/run/m", Pull: "down", Armed: true},
				"led": {Type: config.TypeOutput, Sim: true, SimFIFO: "/run/l"}}
		}
		var buf bytes.Buffer
		a, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(buf.String(), `deprecated config: the \"sensors\" section`) && strings.Contains(buf.String(), "README.md"); got != legacy {
			t.Errorf("legacy %v: log %q", legacy, buf.String())
		}
		if _, ok := a.st.Outputs["led"]; !ok || a.st.Sensors["motion"] == nil || !a.st.Sensors["motion"].Alarm || !a.st.Sensors["motion"].Armed {
			t.Errorf("legacy %v: settings %+v %+v, want the led output and motion as an armed alarm input", legacy, a.st.Outputs, a.st.Sensors)
		}
	}
}
