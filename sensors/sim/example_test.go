package sim_test

import (
	"context"
	"fmt"

	"github.com/iotagent/iotagent/sensors/bme280"
	"github.com/iotagent/iotagent/sensors/motion"
	"github.com/iotagent/iotagent/sensors/output"
	"github.com/iotagent/iotagent/sensors/sim"
)

// The simulated BME280 runs under the real driver.
func ExampleNewBME280() {
	bus := sim.NewBME280(0x76, 22, 45, 101.3)
	dev, err := bme280.New("box", bus, 0x76, bme280.Opts{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close()
	_ = bus.SetTemperature(31.5)
	r, err := dev.Read(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.2f °C %.1f %%RH %.2f kPa\n", r.TemperatureC, r.HumidityPct, r.PressureKPa)
	// Output: 31.50 °C 45.0 %RH 101.30 kPa
}

// Simulated pins under the motion and output drivers.
func ExampleNewInputPin() {
	pir := sim.NewInputPin("GPIO4")
	motionIn, err := motion.New("pir", pir, motion.Opts{})
	if err != nil {
		fmt.Println(err)
		return
	}
	led := sim.NewOutputPin("GPIO17")
	ledOut, err := output.New("led", led, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	pir.Set(true) // what `echo 1 > STATE/sim/motion` does in the demo
	active, _ := motionIn.Active()
	_ = ledOut.Set(active)
	fmt.Println("motion:", active, "led:", led.On())
	// Output: motion: true led: true
}
