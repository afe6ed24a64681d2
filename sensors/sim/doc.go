// Package sim provides simulated hardware so that the agent runs, and its
// drivers are exercised, on any Linux machine: GPIO pins built on periph's
// gpiotest.Pin, an I²C bus (I2CBus) with register-level emulations of the
// chips the registry's drivers read (BME280 and BMP280 for periph's bmxx80,
// MCP9808, BH1750, INA219, ADS1115/ADS1015, SCD4x), temporary sysfs trees
// (Files) with DS18B20 probes as w1_therm shows them and a thermal zone,
// and FeedFIFO, which turns lines written to a named pipe
// into calls (for demos: echo 1 > STATE/sim/motion).
//
// The simulated parts are driven through the real drivers in motion,
// contact, output and bme280, so a demo on a laptop runs the same code as the
// Pi, down to the register transactions.
package sim
