// Package sensors defines the small interfaces the agent uses to talk to the
// device's hardware: environmental sensors ([Sensor]), debounced digital
// inputs ([Input]) and digital outputs ([Output]), and the part registry:
// a [Driver] per part type ([Register], [Lookup]) opens a part as a
// [Sampler] that returns named [Values]. The registry's drivers are
// bme280, bmp280, mcp9808, bh1750, ina219, ads1x15, scd4x (I²C, through
// periph.io's device drivers), ds18b20 (1-Wire through the kernel's
// w1_therm), cputemp (cpu_temp) and exec (a command printing JSON); package
// all imports them all. docs/sensors.md describes each.
//
// The drivers live in subpackages, one per kind of part, and take periph.io
// interfaces (gpio.PinIn, gpio.PinOut, i2c.Bus) so that they run unchanged
// on a Raspberry Pi, against periph's fakes and against the simulated
// backends in package sim:
//
//   - motion: a PIR motion sensor on a GPIO input (active high by default)
//   - contact: a reed switch (lid contact; Active means "lid open")
//   - output: an LED or buzzer on a GPIO output
//   - bme280: a Bosch BME280 over I²C (temperature, humidity, pressure)
//   - sim: simulated pins, register-level emulators of the I²C chips on a
//     simulated bus, sysfs trees for 1-Wire and the thermal zone, and a
//     named-pipe feeder for demos
//   - sensortest: tiny fakes of the interfaces for other packages' tests
//
// Nothing in this tree calls host.Init(): only cmd/ does. Library packages
// return errors and never log.
package sensors
