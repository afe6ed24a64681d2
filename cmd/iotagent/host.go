package main

import (
	"periph.io/x/conn/v3/driver/driverreg"
)

// initHost initialises the periph.io drivers this binary registers, in
// place of periph's host.Init. Importing periph.io/x/host/v3 registers a
// driver for every board periph knows (Allwinner, BeagleBone, C.H.I.P.,
// ODROID, Pine64, …); the agent runs on a Raspberry Pi, so it links only
// what the Pi needs (host_linux.go, host_pi.go): gpioioctl (GPIO lines and
// their edges through /dev/gpiochip*), sysfs (I²C buses, and the legacy
// GPIO fallback), and on ARM bcm283x (gpiomem, pulls) with rpi (the header
// names such as P1_7). deps_test.go keeps the other boards out.
func initHost() (*driverreg.State, error) {
	return driverreg.Init()
}
