//go:build arm || arm64

package main

import (
	// The Raspberry Pi's SoC (gpiomem, pull resistors) and its header pin
	// names; periph's host_arm*.go also registers Allwinner, AM335x,
	// BeagleBone, C.H.I.P., ODROID-C1 and Pine64, which the agent leaves out.
	_ "periph.io/x/host/v3/bcm283x"
	_ "periph.io/x/host/v3/rpi"
)
