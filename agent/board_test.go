package agent_test

import (
	"context"
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
)

// A board with only real parts (a Raspberry Pi's packaged config) has
// nothing to feed: Hardware.Run has no work and must not fail. It used to
// return an error wrapping nil ("simulated sensors: %!w(<nil>)"), which
// ended the agent at every start; the virtual device (make test-vm)
// found it, where every earlier test had a simulated part.
func TestRealPartsOnlyRunWithoutError(t *testing.T) {
	for _, n := range []string{"BOARDTEST4", "BOARDTEST27"} {
		if err := gpioreg.Register(&gpiotest.Pin{N: n, EdgesChan: make(chan gpio.Level)}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.Sensors.Motion = &config.Input{Driver: "gpio", Pin: "BOARDTEST4", Pull: "down"}
	cfg.Sensors.Outputs = []config.Output{{Name: "led", Driver: "gpio", Pin: "BOARDTEST27"}}
	hw, err := agent.OpenHardware(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close()
	if err := hw.Run(context.Background()); err != nil {
		t.Fatalf("Run with only real parts: %v", err)
	}
}
