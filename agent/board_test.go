package agent_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// A line written to a simulated part's named pipe that is not understood
// is logged with the pipe and the line, not dropped without a word; the
// lines that are understood still apply.
func TestSimFIFOBadLinesLogged(t *testing.T) {
	dir := t.TempDir()
	data := []byte(`{"thing_name": "box", "state_dir": "` + dir + `",
		"mqtt": {"endpoint": "127.0.0.1", "port": 8883},
		"parts": {
			"door": {"type": "input", "sim": true, "role": "state"},
			"fridge": {"type": "mcp9808", "sim": true, "bus": "1", "address": 24}
		}}`)
	cfg, err := config.Parse(data, dir)
	if err != nil {
		t.Fatal(err)
	}
	hw, err := agent.OpenHardware(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close()
	logs := &logTail{}
	hw.Log = slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = hw.Run(ctx) }()

	fifo := func(name string) string { return filepath.Join(dir, "sim", name) }
	write := func(name, line string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			f, err := os.OpenFile(fifo(name), os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err == nil { // the feed has the pipe open for reading
				_, err = f.WriteString(line + "\n")
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("open %s: %v", fifo(name), err)
			}
		}
	}
	write("door", "ajar")
	write("fridge", "temperature_c=cold")
	write("fridge", "lux=3")
	write("fridge", "temperature_c=500")
	write("fridge", "temperature_c=4.5")
	want := []string{
		`fifo=` + fifo("door") + ` line=ajar err="want 1 or 0`,
		`fifo=` + fifo("fridge") + ` line="temperature_c=cold" err="want READING=NUMBER`,
		`fifo=` + fifo("fridge") + ` line="lux=3" err="sim mcp9808: no reading`,
		`fifo=` + fifo("fridge") + ` line="temperature_c=500" err="sim mcp9808: set temperature`,
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		missing := 0
		for _, w := range want {
			if !strings.Contains(logs.String(), w) {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d ignored lines not logged; log:\n%s", missing, len(want), logs)
		}
	}
	if n := strings.Count(logs.String(), "line ignored"); n != len(want) {
		t.Errorf("%d lines logged as ignored, want %d (4.5 is a good reading); log:\n%s", n, len(want), logs)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		v, err := hw.Samplers["fridge"].Read(ctx)
		if err == nil && v["temperature_c"] == 4.5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the good line did not apply: %v, %v", v, err)
		}
	}
}
