package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// validConfig returns a Config that passes Validate, with every sensor
// fitted on gpio/i2c and a root CA file that exists.
func validConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("CA"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(`{
		"thing_name": "chocolate-box-1",
		"state_dir": "state",
		"mqtt": {"endpoint": "abc123-ats.iot.eu-west-1.amazonaws.com", "root_ca": "ca.pem"},
		"sensors": {
			"motion": {"driver": "gpio", "pin": "GPIO4"},
			"contact": {"driver": "gpio", "pin": "GPIO17", "pull": "up", "active_low": true},
			"bme280": {"driver": "i2c"},
			"outputs": [
				{"name": "led", "driver": "gpio", "pin": "GPIO27"},
				{"name": "buzzer", "driver": "gpio", "pin": "GPIO22"}
			]
		}
	}`), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("base config is invalid: %v", err)
	}
	return c
}

func paths(err error) []string {
	var out []string
	for _, fe := range FieldErrors(err) {
		out = append(out, fe.Path)
	}
	return out
}

func TestValidate(t *testing.T) {
	simInput := func() *Input { return &Input{Driver: "sim", Pull: "down", DebounceMs: 50, SimFIFO: "/run/fifo"} }
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // paths, in report order; nil: valid
		msg    string   // a substring of the first error's message
	}{
		{"valid", func(*Config) {}, nil, ""},
		{"thing name with colon, underscore, hyphen", func(c *Config) { c.ThingName = "a:b_c-D9" }, nil, ""},
		{"thing name of 128 characters", func(c *Config) { c.ThingName = strings.Repeat("a", 128) }, nil, ""},
		{"thing name missing", func(c *Config) { c.ThingName = "" }, []string{"thing_name"}, "required"},
		{"thing name too long", func(c *Config) { c.ThingName = strings.Repeat("a", 129) }, []string{"thing_name"}, "not a valid thing name"},
		{"thing name with a dot", func(c *Config) { c.ThingName = "box.1" }, []string{"thing_name"}, "1 to 128 of the characters"},
		{"thing name with a slash", func(c *Config) { c.ThingName = "a/b" }, []string{"thing_name"}, ""},
		{"state dir missing", func(c *Config) { c.StateDir = "" }, []string{"state_dir"}, "required"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, []string{"log.level"}, `want one of "debug", "info", "warn", "error"; got "verbose"`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, []string{"log.format"}, ""},
		{"localapi off ignores its fields", func(c *Config) { c.LocalAPI = LocalAPI{Socket: "", Group: "Bad Group"} }, nil, ""},
		{"localapi group name", func(c *Config) { c.LocalAPI.Group = "iotagent" }, nil, ""},
		{"localapi group gid", func(c *Config) { c.LocalAPI.Group = "998" }, nil, ""},
		{"localapi group bad", func(c *Config) { c.LocalAPI.Group = "a b" }, []string{"localapi.group"}, `"a b" is not a group name or numeric gid`},
		{"localapi socket missing", func(c *Config) { c.LocalAPI.Socket = "" }, []string{"localapi.socket"}, "required when localapi.enabled"},
		{"localapi socket too long", func(c *Config) { c.LocalAPI.Socket = "/run/" + strings.Repeat("s", 96) }, []string{"localapi.socket"}, "101 bytes is over the 100-byte limit"},
		{"localapi socket NUL", func(c *Config) { c.LocalAPI.Socket = "/run/a\x00" }, []string{"localapi.socket"}, "NUL"},

		{"endpoint missing", func(c *Config) { c.MQTT.Endpoint = "" }, []string{"mqtt.endpoint"}, "required"},
		{"endpoint IPv4", func(c *Config) { c.MQTT.Endpoint = "127.0.0.1" }, nil, ""},
		{"endpoint IPv6", func(c *Config) { c.MQTT.Endpoint = "::1" }, nil, ""},
		{"endpoint with scheme", func(c *Config) { c.MQTT.Endpoint = "mqtts://iot.example" }, []string{"mqtt.endpoint"}, `drop "mqtts://"`},
		{"endpoint with port", func(c *Config) { c.MQTT.Endpoint = "iot.example:8883" }, []string{"mqtt.endpoint"}, `use "iot.example" and set "port": 8883`},
		{"endpoint with path", func(c *Config) { c.MQTT.Endpoint = "iot.example/mqtt" }, []string{"mqtt.endpoint"}, "character '/'"},
		{"endpoint empty label", func(c *Config) { c.MQTT.Endpoint = "iot..example" }, []string{"mqtt.endpoint"}, "not a valid host name"},
		{"endpoint label with hyphen at end", func(c *Config) { c.MQTT.Endpoint = "iot-.example" }, []string{"mqtt.endpoint"}, ""},
		{"endpoint label too long", func(c *Config) { c.MQTT.Endpoint = strings.Repeat("a", 64) + ".example" }, []string{"mqtt.endpoint"}, ""},
		{"endpoint too long", func(c *Config) { c.MQTT.Endpoint = strings.Repeat("a.", 127) + "ab" }, []string{"mqtt.endpoint"}, "over the 253 limit"},
		{"port 0", func(c *Config) { c.MQTT.Port = 0 }, []string{"mqtt.port"}, "not a TCP port"},
		{"port 65536", func(c *Config) { c.MQTT.Port = 65536 }, []string{"mqtt.port"}, ""},
		{"port 443 without ALPN", func(c *Config) { c.MQTT.Port = 443 }, []string{"mqtt.port"}, `443 needs "alpn": true`},
		{"port 443 with ALPN", func(c *Config) { c.MQTT.Port, c.MQTT.ALPN = 443, true }, nil, ""},
		{"server name", func(c *Config) { c.MQTT.ServerName = "iot.example" }, nil, ""},
		{"server name with port", func(c *Config) { c.MQTT.ServerName = "iot.example:443" }, []string{"mqtt.server_name"}, "without a port"},
		{"root CA missing", func(c *Config) { c.MQTT.RootCA = "" }, []string{"mqtt.root_ca"}, "required"},
		{"keepalive 29", func(c *Config) { c.MQTT.KeepAliveS = 29 }, []string{"mqtt.keepalive_s"}, "29 is out of range: want 30 to 1200"},
		{"keepalive 30", func(c *Config) { c.MQTT.KeepAliveS = 30 }, nil, ""},
		{"keepalive 1200", func(c *Config) { c.MQTT.KeepAliveS = 1200 }, nil, ""},
		{"keepalive 1201", func(c *Config) { c.MQTT.KeepAliveS = 1201 }, []string{"mqtt.keepalive_s"}, ""},
		{"connect timeout 0", func(c *Config) { c.MQTT.ConnectTimeoutS = 0 }, []string{"mqtt.connect_timeout_s"}, ""},
		{"ack timeout 0", func(c *Config) { c.MQTT.AckTimeoutS = 0 }, []string{"mqtt.ack_timeout_s"}, ""},
		{"backoff 0", func(c *Config) { c.MQTT.BackoffMaxS = 0 }, []string{"mqtt.backoff_max_s"}, ""},
		{"backoff 3601", func(c *Config) { c.MQTT.BackoffMaxS = 3601 }, []string{"mqtt.backoff_max_s"}, ""},

		{"cert missing", func(c *Config) { c.Identity.Cert = "" }, []string{"identity.cert"}, "required"},
		{"key missing", func(c *Config) { c.Identity.Key = "" }, []string{"identity.key"}, "required"},
		{"key is the cert", func(c *Config) { c.Identity.Key = c.Identity.Cert }, []string{"identity.key"}, "same file as identity.cert"},
		{"key store tpm", func(c *Config) { c.Identity.KeyStore = "tpm" }, nil, ""},
		{"key store other", func(c *Config) { c.Identity.KeyStore = "pkcs11" }, []string{"identity.key_store"}, `want one of "file", "tpm"; got "pkcs11"`},
		{"tpm on swtpm", func(c *Config) {
			c.Identity.KeyStore = "tpm"
			c.Identity.TPM = TPM{Device: "tcp://127.0.0.1:2321", Handle: 0x81000000}
		}, nil, ""},
		{"tpm device /dev/tpm0", func(c *Config) { c.Identity.TPM.Device = "/dev/tpm0" }, nil, ""},
		{"tpm device missing", func(c *Config) { c.Identity.TPM.Device = "" }, []string{"identity.tpm.device"}, "required"},
		{"tpm device relative", func(c *Config) { c.Identity.TPM.Device = "tpmrm0" }, []string{"identity.tpm.device"}, `want a device path such as "/dev/tpmrm0" or tcp://HOST:PORT`},
		{"tpm device other scheme", func(c *Config) { c.Identity.TPM.Device = "unix:///run/swtpm" }, []string{"identity.tpm.device"}, "want a device path"},
		{"tpm device without port", func(c *Config) { c.Identity.TPM.Device = "tcp://127.0.0.1" }, []string{"identity.tpm.device"}, "want tcp://HOST:PORT"},
		{"tpm device bad host", func(c *Config) { c.Identity.TPM.Device = "tcp://a_b:2321" }, []string{"identity.tpm.device"}, "not a valid host name"},
		{"tpm device port 65535", func(c *Config) { c.Identity.TPM.Device = "tcp://127.0.0.1:65535" }, []string{"identity.tpm.device"}, "is not 1 to 65534"},
		{"tpm handle platform", func(c *Config) { c.Identity.TPM.Handle = 0x81800000 }, []string{"identity.tpm.handle"},
			"0x81800000 is not an owner persistent handle: want 0x81000000 to 0x817fffff"},
		{"tpm handle transient", func(c *Config) { c.Identity.TPM.Handle = 0x80000001 }, []string{"identity.tpm.handle"}, "not an owner persistent handle"},

		{"custom topic", func(c *Config) { c.Topics.Telemetry = "site/a/{thing}/telemetry" }, nil, ""},
		{"topic empty", func(c *Config) { c.Topics.Telemetry = "" }, []string{"topics.telemetry"}, "required"},
		{"topic with +", func(c *Config) { c.Topics.Alarms = "alarms/+" }, []string{"topics.alarms"}, "wildcard"},
		{"topic with #", func(c *Config) { c.Topics.Warnings = "warnings/#" }, []string{"topics.warnings"}, "wildcard"},
		{"topic starting with $", func(c *Config) { c.Topics.Telemetry = "$aws/things/{thing}/x" }, []string{"topics.telemetry"}, "reserved"},
		{"topic with 7 slashes", func(c *Config) { c.Topics.Telemetry = "a/b/c/d/e/f/g/{thing}" }, nil, ""},
		{"topic with 8 slashes", func(c *Config) { c.Topics.Telemetry = "a/b/c/d/e/f/g/h/{thing}" }, []string{"topics.telemetry"}, "8 slashes"},
		{"topic over 256 bytes after expansion", func(c *Config) {
			c.Topics.Telemetry = strings.Repeat("t", 256-len("/chocolate-box-1")+1) + "/{thing}"
		}, []string{"topics.telemetry"}, "257 bytes"},
		{"topic of 256 bytes", func(c *Config) {
			c.Topics.Telemetry = strings.Repeat("t", 256-len("/chocolate-box-1")) + "/{thing}"
		}, nil, ""},
		{"topic with unknown placeholder", func(c *Config) { c.Topics.Telemetry = "telemetry/{thing_name}" }, []string{"topics.telemetry"}, "unknown placeholder"},
		{"topic with NUL", func(c *Config) { c.Topics.Telemetry = "a\x00b" }, []string{"topics.telemetry"}, "NUL"},
		{"topic not UTF-8", func(c *Config) { c.Topics.Telemetry = "a\xffb" }, []string{"topics.telemetry"}, "UTF-8"},

		{"outbox max messages 0", func(c *Config) { c.Outbox.MaxMessages = 0 }, []string{"outbox.max_messages"}, ""},
		{"outbox max bytes too small", func(c *Config) { c.Outbox.MaxBytes = 128<<10 - 1 }, []string{"outbox.max_bytes"}, ""},
		{"outbox max bytes minimum", func(c *Config) { c.Outbox.MaxBytes = 128 << 10 }, nil, ""},
		{"outbox max bytes too big", func(c *Config) { c.Outbox.MaxBytes = 1<<30 + 1 }, []string{"outbox.max_bytes"}, ""},
		{"outbox memory queue off", func(c *Config) { c.Outbox.MemoryMessages = 0 }, []string{"outbox.memory_messages"}, ""},
		{"outbox memory queue too big", func(c *Config) { c.Outbox.MemoryMessages = 100_001 }, []string{"outbox.memory_messages"}, ""},
		{"telemetry interval 0", func(c *Config) { c.Telemetry.IntervalS = 0 }, []string{"telemetry.interval_s"}, ""},
		{"telemetry interval one day", func(c *Config) { c.Telemetry.IntervalS = 86400 }, nil, ""},
		{"telemetry interval over a day", func(c *Config) { c.Telemetry.IntervalS = 86401 }, []string{"telemetry.interval_s"}, ""},
		{"max temperature -40", func(c *Config) { c.Temperature.MaxC = -40 }, nil, ""},
		{"max temperature 85.5", func(c *Config) { c.Temperature.MaxC = 85.5 }, []string{"temperature.max_c"}, "85.5 is out of range"},
		{"max temperature NaN", func(c *Config) { c.Temperature.MaxC = math.NaN() }, []string{"temperature.max_c"}, ""},

		{"no sensors at all", func(c *Config) { c.Sensors = Sensors{} }, nil, ""},
		{"sim sensors", func(c *Config) {
			c.Sensors.Motion, c.Sensors.Contact = simInput(), simInput()
			c.Sensors.BME280 = &BME280{Driver: "sim", Bus: "1", Address: 119, SimTemperatureC: 21, SimFIFO: "/run/bme"}
		}, nil, ""},
		{"input driver", func(c *Config) { c.Sensors.Motion.Driver = "" }, []string{"sensors.motion.driver"}, `want "gpio" or "sim", got ""`},
		{"input pin missing", func(c *Config) { c.Sensors.Contact.Pin = "" }, []string{"sensors.contact.pin"}, `required for driver "gpio"`},
		{"input pin bad", func(c *Config) { c.Sensors.Contact.Pin = "GPIO 17" }, []string{"sensors.contact.pin"}, "not a pin name"},
		{"input pull", func(c *Config) { c.Sensors.Motion.Pull = "high" }, []string{"sensors.motion.pull"}, ""},
		{"input debounce negative", func(c *Config) { c.Sensors.Motion.DebounceMs = -1 }, []string{"sensors.motion.debounce_ms"}, ""},
		{"input debounce too long", func(c *Config) { c.Sensors.Motion.DebounceMs = 10001 }, []string{"sensors.motion.debounce_ms"}, ""},
		{"sim input without FIFO", func(c *Config) { c.Sensors.Motion = simInput(); c.Sensors.Motion.SimFIFO = "" }, []string{"sensors.motion.sim_fifo"}, ""},
		{"bme280 driver", func(c *Config) { c.Sensors.BME280.Driver = "spi" }, []string{"sensors.bme280.driver"}, ""},
		{"bme280 bus", func(c *Config) { c.Sensors.BME280.Bus = "" }, []string{"sensors.bme280.bus"}, ""},
		{"bme280 address", func(c *Config) { c.Sensors.BME280.Address = 0x78 }, []string{"sensors.bme280.address"}, "want 118 (0x76) or 119 (0x77), got 120"},
		{"bme280 sim temperature", func(c *Config) { c.Sensors.BME280.SimTemperatureC = 100 }, []string{"sensors.bme280.sim_temperature_c"}, ""},
		{"bme280 sim without FIFO", func(c *Config) { c.Sensors.BME280.Driver = "sim" }, []string{"sensors.bme280.sim_fifo"}, ""},
		{"output name missing", func(c *Config) { c.Sensors.Outputs[0].Name = "" }, []string{"sensors.outputs[0].name"}, "required"},
		{"output name upper case", func(c *Config) { c.Sensors.Outputs[1].Name = "Buzzer" }, []string{"sensors.outputs[1].name"}, "a-z 0-9 _"},
		{"output names duplicate", func(c *Config) { c.Sensors.Outputs[1].Name = "led" }, []string{"sensors.outputs[1].name"}, `"led" is already the name of sensors.outputs[0]`},
		{"output driver", func(c *Config) { c.Sensors.Outputs[0].Driver = "pwm" }, []string{"sensors.outputs[0].driver"}, ""},
		{"output pin missing", func(c *Config) { c.Sensors.Outputs[1].Pin = "" }, []string{"sensors.outputs[1].pin"}, ""},
		{"sim output needs no pin", func(c *Config) { c.Sensors.Outputs[1] = Output{Name: "buzzer", Driver: "sim"} }, nil, ""},
		{"pin shared by input and output", func(c *Config) { c.Sensors.Outputs[0].Pin = "GPIO4" }, []string{"sensors.outputs[0].pin"}, "GPIO4 is already used by sensors.motion"},
		{"pin shared by two outputs", func(c *Config) { c.Sensors.Outputs[1].Pin = "GPIO27" }, []string{"sensors.outputs[1].pin"}, "already used by sensors.outputs[0]"},
		{"sim devices share no pins", func(c *Config) {
			c.Sensors.Motion = simInput()
			c.Sensors.Motion.Pin = "GPIO27"
		}, nil, ""},

		{"every problem at once", func(c *Config) {
			c.ThingName = "bad name"
			c.Log.Level = ""
			c.MQTT.Port = 443
			c.MQTT.KeepAliveS = 5
			c.Identity.KeyStore = "pkcs11"
			c.Topics.Alarms = "#"
			c.Telemetry.IntervalS = 0
			c.Sensors.Motion.Pull = "sideways"
			c.Sensors.BME280.Address = 0
			c.Sensors.Outputs[1].Name = "led"
			c.Sensors.Outputs[1].Pin = "GPIO17"
		}, []string{
			"thing_name", "log.level", "mqtt.port", "mqtt.keepalive_s", "identity.key_store", "topics.alarms",
			"telemetry.interval_s", "sensors.motion.pull", "sensors.bme280.address",
			"sensors.outputs[1].name", "sensors.outputs[1].pin",
		}, "bad name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if diff := cmp.Diff(tt.want, paths(err)); diff != "" {
				t.Fatalf("error paths (-want +got):\n%s\nerror: %v", diff, err)
			}
			for _, fe := range FieldErrors(err) {
				if !errors.Is(fe, ErrInvalid) {
					t.Errorf("%v does not wrap ErrInvalid", fe)
				}
				if !strings.HasPrefix(fe.Error(), fe.Path+": ") {
					t.Errorf("message %q does not start with its path", fe)
				}
			}
			if tt.msg != "" {
				if first := FieldErrors(err)[0].Error(); !strings.Contains(first, tt.msg) {
					t.Errorf("first error %q does not contain %q", first, tt.msg)
				}
			}
			if err != nil && len(strings.Split(err.Error(), "\n")) != len(tt.want) {
				t.Errorf("joined message has the wrong number of lines:\n%v", err)
			}
		})
	}
}

func TestValidateFiles(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(c *Config, dir string)
		want     []string
		notExist bool // the error wraps fs.ErrNotExist
	}{
		{"root CA does not exist", func(c *Config, dir string) { c.MQTT.RootCA = filepath.Join(dir, "nope.pem") }, []string{"mqtt.root_ca"}, true},
		{"root CA is a directory", func(c *Config, dir string) { c.MQTT.RootCA = dir }, []string{"mqtt.root_ca"}, false},
		{"cert and key may be missing (not provisioned yet)", func(c *Config, dir string) {
			c.Identity.Cert, c.Identity.Key = filepath.Join(dir, "x.crt"), filepath.Join(dir, "x.key")
		}, nil, false},
		{"cert is a directory", func(c *Config, dir string) { c.Identity.Cert = dir }, []string{"identity.cert"}, false},
		{"key is a directory", func(c *Config, dir string) { c.Identity.Key = dir }, []string{"identity.key"}, false},
		{"path with a NUL byte", func(c *Config, dir string) { c.MQTT.RootCA = dir + "/a\x00b" }, []string{"mqtt.root_ca"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c, t.TempDir())
			err := c.Validate()
			if diff := cmp.Diff(tt.want, paths(err)); diff != "" {
				t.Fatalf("error paths (-want +got):\n%s\nerror: %v", diff, err)
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tt.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v: %v", got, tt.notExist, err)
			}
		})
	}
}

func ExampleParse() {
	c, err := Parse([]byte(`{
		"thing_name": "chocolate-box-1",
		"mqtt": {"endpoint": "127.0.0.1", "root_ca": "ca.pem", "prot": 8883},
		"sensors": {"outputs": [{"name": "led", "driver": "sim", "pinn": "GPIO27"}]}
	}`), "/etc/iotagent")
	fmt.Println(err)

	c, _ = Parse([]byte(`{"thing_name": "chocolate-box-1", "mqtt": {"endpoint": "127.0.0.1", "root_ca": "ca.pem"}}`), "/etc/iotagent")
	fmt.Println(c.MQTT.RootCA, c.Identity.Key)
	fmt.Println(c.Topic(c.Topics.Telemetry))
	// Output:
	// unknown field "mqtt.prot"
	// unknown field "sensors.outputs[0].pinn"
	// /etc/iotagent/ca.pem /var/lib/iotagent/identity/device.key
	// telemetry/chocolate-box-1
}
