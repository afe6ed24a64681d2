// Package sensors defines the small interfaces the agent uses to talk to the
// device's hardware: environmental sensors ([Sensor]), debounced digital
// inputs ([Input]) and digital outputs ([Output]).
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
//   - sim: simulated pins, a BME280 register-level emulator and a named-pipe
//     feeder for demos
//   - sensortest: tiny fakes of the interfaces for other packages' tests
//
// Nothing in this tree calls host.Init(): only cmd/ does. Library packages
// return errors and never log.
package sensors
