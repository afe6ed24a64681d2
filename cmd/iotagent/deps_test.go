package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNoSimulatorInTheAgent keeps iotsim (cloud/...), the MQTT broker,
// iotimage's disk image libraries (go-diskfs, xz), regexp and debug/elf
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
		// cmd/iotimage is a workstation tool: its FAT and xz code stays out.
		if strings.HasPrefix(dep, "github.com/diskfs/") || strings.HasPrefix(dep, "github.com/ulikunitz/") || strings.HasPrefix(dep, "github.com/iotagent/iotagent/cmd/iotimage") {
			t.Errorf("iotagent links %s, which only iotimage needs", dep)
		}
		// regexp and debug/elf cost the binary about 250 and 100 KiB; the
		// name checks and the OTA arch check do without them.
		if dep == "regexp" || dep == "debug/elf" {
			t.Errorf("iotagent links %s again", dep)
		}
	}
}

// TestOnlyThePisPeriphDrivers keeps periph.io/x/host/v3 itself (whose
// import registers a driver for every board periph knows) out of the agent,
// and checks that the drivers a Raspberry Pi needs stay in (see host.go).
func TestOnlyThePisPeriphDrivers(t *testing.T) {
	const host = "periph.io/x/host/v3"
	tests := []struct {
		goarch string
		want   []string
	}{
		{"arm", []string{host + "/bcm283x", host + "/rpi", host + "/gpioioctl", host + "/sysfs"}},
		{"arm64", []string{host + "/bcm283x", host + "/rpi", host + "/gpioioctl", host + "/sysfs"}},
		{"amd64", []string{host + "/gpioioctl", host + "/sysfs"}},
	}
	allowed := map[string]bool{host + "/cpu": true, host + "/distro": true, host + "/fs": true, host + "/pmem": true, host + "/videocore": true}
	for _, tt := range tests {
		t.Run(tt.goarch, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", ".")
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+tt.goarch, "CGO_ENABLED=0")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			got := map[string]bool{}
			for _, dep := range strings.Fields(string(out)) {
				if dep != host && !strings.HasPrefix(dep, host+"/") {
					continue
				}
				got[dep] = true
			}
			for _, w := range tt.want {
				if !got[w] {
					t.Errorf("iotagent does not link %s, which the Pi needs", w)
				}
				allowed[w] = true
			}
			for dep := range got {
				if !allowed[dep] {
					t.Errorf("iotagent links %s: only the Raspberry Pi's periph drivers belong in the agent (host.go)", dep)
				}
			}
		})
	}
}
