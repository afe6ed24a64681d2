// Package all registers every driver of the part registry
// (sensors.Register): import it for its side effect,
//
//	import _ "github.com/iotagent/iotagent/sensors/all"
//
// and sensors.Types lists bme280, bh1750, bmp280, cpu_temp, ads1x15,
// ds18b20, exec, ina219, mcp9808 and scd4x.
package all

import (
	_ "github.com/iotagent/iotagent/sensors/ads1x15"
	_ "github.com/iotagent/iotagent/sensors/bh1750"
	_ "github.com/iotagent/iotagent/sensors/bme280"
	_ "github.com/iotagent/iotagent/sensors/bmp280"
	_ "github.com/iotagent/iotagent/sensors/cputemp"
	_ "github.com/iotagent/iotagent/sensors/ds18b20"
	_ "github.com/iotagent/iotagent/sensors/exec"
	_ "github.com/iotagent/iotagent/sensors/ina219"
	_ "github.com/iotagent/iotagent/sensors/mcp9808"
	_ "github.com/iotagent/iotagent/sensors/scd4x"
)
