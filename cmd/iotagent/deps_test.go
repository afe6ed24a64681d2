package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoSimulatorInTheAgent keeps iotsim (cloud/...) and the MQTT broker
// out of the device binary.
func TestNoSimulatorInTheAgent(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/iotagent/iotagent/cloud") || strings.HasPrefix(dep, "github.com/mochi-mqtt/") {
			t.Errorf("iotagent links %s", dep)
		}
	}
}
