// Package sim provides simulated hardware so that the agent runs, and its
// drivers are exercised, on any Linux machine: GPIO pins built on periph's
// gpiotest.Pin, an I²C bus that emulates a BME280's register map for the
// real bmxx80 driver, and FeedFIFO, which turns lines written to a named pipe
// into calls (for demos: echo 1 > STATE/sim/motion).
//
// The simulated parts are driven through the real drivers in motion,
// contact, output and bme280, so a demo on a laptop runs the same code as the
// Pi, down to the register transactions.
package sim
