package main

// The part registry's drivers (I²C, 1-Wire, CPU temperature, exec): the
// agent opens the parts its config names through sensors.Lookup.
import _ "github.com/iotagent/iotagent/sensors/all"
