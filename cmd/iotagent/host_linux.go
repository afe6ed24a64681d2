package main

import (
	// GPIO through the character device (edges included) and the sysfs
	// fallbacks, I²C buses through /dev/i2c-*: what host_linux.go in
	// periph.io/x/host/v3 registers, less netlink (1-wire), unused here.
	_ "periph.io/x/host/v3/gpioioctl"
	_ "periph.io/x/host/v3/sysfs"
)
