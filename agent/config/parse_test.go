package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// messages returns the message of every FieldError in err.
func messages(err error) []string {
	var out []string
	for _, fe := range FieldErrors(err) {
		out = append(out, fe.Error())
	}
	return out
}

func TestDefault(t *testing.T) {
	want := Config{
		StateDir: "/var/lib/iotagent",
		Log:      Log{Level: "info", Format: "text"},
		MQTT:     MQTT{Port: 8883, KeepAliveS: 60, ConnectTimeoutS: 10, BackoffMaxS: 120, AckTimeoutS: 30},
		Identity: Identity{
			Cert:     "/var/lib/iotagent/identity/device.crt",
			KeyStore: "file",
			Key:      "/var/lib/iotagent/identity/device.key",
			TPM:      TPM{Device: "/dev/tpmrm0", Handle: 0x81000010},
		},
		Topics:      Topics{Telemetry: "telemetry/{thing}", Alarms: "alarms/{thing}", Warnings: "warnings/{thing}"},
		Outbox:      Outbox{MaxMessages: 10000, MaxBytes: 16 << 20, MemoryMessages: 1000},
		Telemetry:   Telemetry{IntervalS: 60},
		Temperature: Temperature{MaxC: 30},
		Defender:    Defender{Format: "json", IntervalS: 300},
		LocalAPI:    LocalAPI{Enabled: true, Socket: "/run/iotagent/iotagent.sock"},
		Rotation:    Rotation{Days: 30, TPMSpareHandle: 0x81000011},
		Jobs:        Jobs{Enabled: true, StepTimeoutMin: 10, DownloadMaxBytes: 64 << 20},
		OTA:         OTA{MaxStarts: 3, TrialTimeoutS: 120},
	}
	if diff := cmp.Diff(want, Default()); diff != "" {
		t.Errorf("Default() (-want +got):\n%s", diff)
	}
}

func TestParseDefaults(t *testing.T) {
	const minimal = `{"thing_name":"box-1","mqtt":{"endpoint":"127.0.0.1","root_ca":"/etc/iotagent/ca.pem"}}`
	got, err := Parse([]byte(minimal), "/etc/iotagent")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.ThingName = "box-1"
	want.MQTT.Endpoint = "127.0.0.1"
	want.MQTT.RootCA = "/etc/iotagent/ca.pem"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse(minimal) (-want +got):\n%s", diff)
	}
	if got.MQTT.TLSServerName() != "127.0.0.1" {
		t.Errorf("TLSServerName() = %q, want the endpoint", got.MQTT.TLSServerName())
	}
	got.MQTT.ServerName = "iot.example"
	if got.MQTT.TLSServerName() != "iot.example" {
		t.Errorf("TLSServerName() = %q, want the override", got.MQTT.TLSServerName())
	}
}

func TestParseDerivedDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want func(*Config)
	}{
		{
			name: "state_dir moves the identity files and the socket",
			in:   `{"state_dir":"/data/agent"}`,
			want: func(c *Config) {
				c.StateDir = "/data/agent"
				c.Identity.Cert = "/data/agent/identity/device.crt"
				c.Identity.Key = "/data/agent/identity/device.key"
				c.LocalAPI.Socket = "/data/agent/iotagent.sock"
			},
		},
		{
			name: "explicit identity files and socket stay",
			in:   `{"state_dir":"/data","identity":{"cert":"/c.pem","key":"/k.pem"},"localapi":{"socket":"/run/x.sock"}}`,
			want: func(c *Config) {
				c.StateDir = "/data"
				c.Identity.Cert = "/c.pem"
				c.Identity.Key = "/k.pem"
				c.LocalAPI.Socket = "/run/x.sock"
			},
		},
		{
			name: "a state_dir too long for a socket keeps the default socket",
			in:   `{"state_dir":"/` + strings.Repeat("d", 100) + `"}`,
			want: func(c *Config) {
				c.StateDir = "/" + strings.Repeat("d", 100)
				c.Identity.Cert = c.StateDir + "/identity/device.crt"
				c.Identity.Key = c.StateDir + "/identity/device.key"
			},
		},
		{
			name: "sensor objects start from their defaults",
			in: `{"sensors":{"motion":{"driver":"sim"},"contact":{"driver":"gpio","pin":"GPIO17","pull":"up","debounce_ms":0},
				"bme280":{"driver":"sim"},"outputs":[{"name":"led","driver":"sim"}]}}`,
			want: func(c *Config) {
				c.Sensors.Motion = &Input{Driver: "sim", Pull: "down", DebounceMs: 50, SimFIFO: "/var/lib/iotagent/sim/motion"}
				c.Sensors.Contact = &Input{Driver: "gpio", Pin: "GPIO17", Pull: "up", DebounceMs: 0}
				c.Sensors.BME280 = &BME280{Driver: "sim", Bus: "1", Address: 118, SimTemperatureC: 21, SimFIFO: "/var/lib/iotagent/sim/bme280"}
				c.Sensors.Outputs = []Output{{Name: "led", Driver: "sim"}}
			},
		},
		{
			name: "i2c bme280 gets no FIFO",
			in:   `{"sensors":{"bme280":{"driver":"i2c","address":119}}}`,
			want: func(c *Config) {
				c.Sensors.BME280 = &BME280{Driver: "i2c", Bus: "1", Address: 119, SimTemperatureC: 21}
			},
		},
		{
			name: "null sensors and outputs",
			in:   `{"sensors":{"motion":null,"contact":null,"bme280":null,"outputs":null}}`,
			want: func(*Config) {},
		},
		{
			name: "empty outputs array stays empty",
			in:   `{"sensors":{"outputs":[]}}`,
			want: func(c *Config) { c.Sensors.Outputs = []Output{} },
		},
		{
			name: "integral floats are integers",
			in:   `{"mqtt":{"port":8883.0},"outbox":{"max_bytes":1e6}}`,
			want: func(c *Config) { c.Outbox.MaxBytes = 1000000 },
		},
		{
			name: "UTF-8 BOM",
			in:   "\xef\xbb\xbf{\"thing_name\":\"a\"}",
			want: func(c *Config) { c.ThingName = "a" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in), "/etc/iotagent")
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRelativePaths(t *testing.T) {
	const in = `{
		"state_dir": "state",
		"mqtt": {"root_ca": "../certs/AmazonRootCA1.pem"},
		"identity": {"key": "./keys//device.key"},
		"sensors": {"motion": {"driver":"sim","sim_fifo":"fifos/motion"}, "contact": {"driver":"sim"},
			"bme280": {"driver":"sim","sim_fifo":"/abs/../run/bme"}}
	}`
	got, err := Parse([]byte(in), "/etc/iotagent")
	if err != nil {
		t.Fatal(err)
	}
	type paths struct{ State, RootCA, Cert, Key, Motion, Contact, BME string }
	want := paths{
		State:   "/etc/iotagent/state",
		RootCA:  "/etc/certs/AmazonRootCA1.pem",
		Cert:    "/etc/iotagent/state/identity/device.crt", // derived from the resolved state_dir
		Key:     "/etc/iotagent/keys/device.key",
		Motion:  "/etc/iotagent/fifos/motion",
		Contact: "/etc/iotagent/state/sim/contact",
		BME:     "/run/bme", // absolute paths are only cleaned
	}
	gotPaths := paths{got.StateDir, got.MQTT.RootCA, got.Identity.Cert, got.Identity.Key,
		got.Sensors.Motion.SimFIFO, got.Sensors.Contact.SimFIFO, got.Sensors.BME280.SimFIFO}
	if diff := cmp.Diff(want, gotPaths); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		kind error
	}{
		{"unknown top-level field", `{"thing":"x"}`, []string{`unknown field "thing"`}, ErrUnknownField},
		{"unknown nested field", `{"mqtt":{"prot":8883}}`, []string{`unknown field "mqtt.prot"`}, ErrUnknownField},
		{"unknown in pointer struct", `{"sensors":{"bme280":{"driver":"i2c","adress":118}}}`,
			[]string{`unknown field "sensors.bme280.adress"`}, ErrUnknownField},
		{"unknown inside array element", `{"sensors":{"outputs":[{"name":"led","driver":"sim"},{"name":"b","driver":"gpio","pinn":"GPIO22"}]}}`,
			[]string{`unknown field "sensors.outputs[1].pinn"`}, ErrUnknownField},
		{"unknown with an object value is skipped whole", `{"extra":{"a":[1,{"b":2}]},"thing_name":"ok"}`,
			[]string{`unknown field "extra"`}, ErrUnknownField},
		{"case mismatch hints", `{"MQTT":{"Port":1}}`, []string{`unknown field "MQTT" (did you mean "mqtt"?)`}, ErrUnknownField},
		{"several unknown fields, all reported in order", `{"a":1,"mqtt":{"b":2,"port":1},"sensors":{"outputs":[{},{"c":3}]}}`,
			[]string{`unknown field "a"`, `unknown field "mqtt.b"`, `unknown field "sensors.outputs[1].c"`}, ErrUnknownField},
		{"odd characters in the key are quoted", "{\"a\\\"b\\n\":1}", []string{`unknown field "a\"b\n"`}, ErrUnknownField},

		{"string for number", `{"mqtt":{"port":"8883"}}`, []string{`mqtt.port: want a number, got string`}, ErrWrongType},
		{"fraction for integer", `{"mqtt":{"port":88.5}}`, []string{`mqtt.port: want an integer, got 88.5`}, ErrWrongType},
		{"integer overflow", `{"outbox":{"max_bytes":99999999999999999999}}`, []string{`outbox.max_bytes: want an integer, got 99999999999999999999`}, ErrWrongType},
		{"float out of range", `{"temperature":{"max_c":1e999}}`, []string{`temperature.max_c: want a number, got 1e999 (out of range)`}, ErrWrongType},
		{"number for string", `{"thing_name":42}`, []string{`thing_name: want a string, got number`}, ErrWrongType},
		{"string for bool", `{"alarm":{"armed":"true"}}`, []string{`alarm.armed: want true or false, got string`}, ErrWrongType},
		{"null for scalar", `{"mqtt":{"port":null}}`, []string{`mqtt.port: want a number, got null`}, ErrWrongType},
		{"null for struct", `{"mqtt":null}`, []string{`mqtt: want an object, got null`}, ErrWrongType},
		{"array for struct", `{"log":["info"]}`, []string{`log: want an object, got array`}, ErrWrongType},
		{"string for optional sensor", `{"sensors":{"motion":"gpio"}}`, []string{`sensors.motion: want an object or null, got string`}, ErrWrongType},
		{"object for array", `{"sensors":{"outputs":{"name":"led"}}}`, []string{`sensors.outputs: want an array, got object`}, ErrWrongType},
		{"wrong type in array element", `{"sensors":{"outputs":[{"name":"led"},"buzzer"]}}`, []string{`sensors.outputs[1]: want an object, got string`}, ErrWrongType},
		{"wrong type deep in array element", `{"sensors":{"outputs":[{"active_low":1}]}}`, []string{`sensors.outputs[0].active_low: want true or false, got number`}, ErrWrongType},
		{"top-level array", `[{"thing_name":"x"}]`, []string{`config: want an object, got array`}, ErrWrongType},
		{"top-level null", `null`, []string{`config: want an object, got null`}, ErrWrongType},

		{"tpm handle: boolean", `{"identity":{"tpm":{"handle":true}}}`, []string{`identity.tpm.handle: want a number or a string such as "0x81000010", got boolean`}, ErrWrongType},
		{"tpm handle: not a number", `{"identity":{"tpm":{"handle":"81000010h"}}}`, []string{`identity.tpm.handle: want a 32-bit unsigned integer such as "0x81000010", got "81000010h"`}, ErrWrongType},
		{"tpm handle: over 32 bits", `{"identity":{"tpm":{"handle":"0x181000010"}}}`, []string{`identity.tpm.handle: want a 32-bit unsigned integer such as "0x81000010", got "0x181000010"`}, ErrWrongType},
		{"tpm handle: negative", `{"identity":{"tpm":{"handle":-1}}}`, []string{`identity.tpm.handle: want a 32-bit unsigned integer such as "0x81000010", got "-1"`}, ErrWrongType},
		{"tpm handle: fraction", `{"identity":{"tpm":{"handle":1.5}}}`, []string{`identity.tpm.handle: want a 32-bit unsigned integer such as "0x81000010", got "1.5"`}, ErrWrongType},
		{"tpm handle: underscore", `{"identity":{"tpm":{"handle":"0x8100_0010"}}}`, []string{`identity.tpm.handle: want a 32-bit unsigned integer such as "0x81000010", got "0x8100_0010"`}, ErrWrongType},
		{"tpm: unknown field", `{"identity":{"tpm":{"path":"/dev/tpm0"}}}`, []string{`unknown field "identity.tpm.path"`}, ErrUnknownField},

		{"duplicate field", `{"mqtt":{"port":1,"port":2}}`, []string{`mqtt.port: appears more than once`}, ErrDuplicateField},

		{"mixed problems all reported", `{"mqtt":{"port":"x","prot":1},"thing_name":1,"thing_name":"y"}`,
			[]string{`mqtt.port: want a number, got string`, `unknown field "mqtt.prot"`, `thing_name: want a string, got number`, `thing_name: appears more than once`}, nil},

		{"trailing object", `{} {}`, []string{`config: trailing data after the config object at line 1, column 4`}, ErrSyntax},
		{"trailing garbage", "{\"thing_name\":\"x\"}\ngarbage", []string{`config: trailing data after the config object at line 2, column 1`}, ErrSyntax},
		{"trailing brace", `{}}`, []string{`config: trailing data after the config object at line 1, column 3`}, ErrSyntax},
		{"trailing comma", "{\n  \"thing_name\": \"x\",\n}", []string{`config: invalid JSON at line 3, column 1: invalid character '}' looking for beginning of object key string`}, ErrSyntax},
		{"truncated", `{"mqtt":{"port":1`, []string{`config: invalid JSON: unexpected end of file`}, ErrSyntax},
		{"empty", ``, []string{`config: empty file; want a JSON object`}, ErrSyntax},
		{"whitespace", " \n\t", []string{`config: empty file; want a JSON object`}, ErrSyntax},
		{"syntax error wins over field errors", `{"a":1,"mqtt":{"port":1,,}}`, []string{`config: invalid JSON at line 1, column 25: invalid character ',' looking for beginning of object key string`}, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), "/etc/iotagent")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if diff := cmp.Diff(tt.want, messages(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if tt.kind != nil {
				for _, fe := range FieldErrors(err) {
					if !errors.Is(fe, tt.kind) {
						t.Errorf("%v does not wrap %v", fe, tt.kind)
					}
				}
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	big := []byte(`{"thing_name":"` + strings.Repeat("a", MaxFileSize) + `"}`)
	if _, err := Parse(big, "/"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse: %v, want ErrTooLarge", err)
	}
	// Exactly at the limit is fine (and then fails on content, not size).
	atLimit := []byte(`{"thing_name":"` + strings.Repeat("a", MaxFileSize-17) + `"}`)
	if len(atLimit) != MaxFileSize {
		t.Fatalf("test setup: %d bytes", len(atLimit))
	}
	if _, err := Parse(atLimit, "/"); err != nil {
		t.Errorf("Parse at the limit: %v", err)
	}

	path := filepath.Join(t.TempDir(), "huge.json")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Load: %v, want ErrTooLarge", err)
	}
}

// Deep nesting anywhere must give a clear error, not exhaust the stack.
func TestParseDeepNesting(t *testing.T) {
	const depth = 400_000 // ~800 KB: under the size limit
	arrays := strings.Repeat("[", depth) + strings.Repeat("]", depth)
	objects := strings.Repeat(`{"a":`, depth/5) + "1" + strings.Repeat("}", depth/5)
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"top level", arrays, []string{`config: want an object, got array`}},
		{"unknown field", `{"x":` + arrays + `}`, []string{`unknown field "x"`}},
		{"unknown nested objects", `{"mqtt":{"x":` + objects + `}}`, []string{`unknown field "mqtt.x"`}},
		{"known struct field", `{"mqtt":` + arrays + `}`, []string{`mqtt: want an object, got array`}},
		{"array element", `{"sensors":{"outputs":` + arrays + `}}`, []string{`sensors.outputs[0]: want an object, got array`}},
		{"unclosed", `{"x":` + strings.Repeat("[", depth), []string{`config: invalid JSON: unexpected end of file`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), "/")
			if diff := cmp.Diff(tt.want, messages(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTopic(t *testing.T) {
	c := Default()
	c.ThingName = "chocolate-box-1"
	for tmpl, want := range map[string]string{
		"telemetry/{thing}":           "telemetry/chocolate-box-1",
		"site/{thing}/alarms/{thing}": "site/chocolate-box-1/alarms/chocolate-box-1",
		"fixed/topic":                 "fixed/topic",
	} {
		if got := c.Topic(tmpl); got != want {
			t.Errorf("Topic(%q) = %q, want %q", tmpl, got, want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("CA"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	good := write("good.json", `{"thing_name":"box-1","state_dir":"state","mqtt":{"endpoint":"localhost","root_ca":"ca.pem"}}`)
	c, err := Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := filepath.Join(dir, "ca.pem"); c.MQTT.RootCA != want {
		t.Errorf("root_ca = %q, want %q (relative to the file, not the working directory)", c.MQTT.RootCA, want)
	}
	if want := filepath.Join(dir, "state", "identity", "device.key"); c.Identity.Key != want {
		t.Errorf("identity.key = %q, want %q", c.Identity.Key, want)
	}

	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope.json"))
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.json") {
			t.Errorf("Load: %v, want fs.ErrNotExist naming the file", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Errorf("Load: %v, want \"is a directory\"", err)
		}
	})
	t.Run("parse error names the file", func(t *testing.T) {
		p := write("bad.json", `{"mqtt":{"prot":1}}`)
		_, err := Load(p)
		if !errors.Is(err, ErrUnknownField) || !strings.HasPrefix(err.Error(), "config "+p+": ") {
			t.Errorf("Load: %v, want ErrUnknownField prefixed with the path", err)
		}
	})
	t.Run("validation errors", func(t *testing.T) {
		p := write("invalid.json", `{"mqtt":{"endpoint":"localhost","root_ca":"ca.pem","port":443}}`)
		_, err := Load(p)
		var paths []string
		for _, fe := range FieldErrors(err) {
			paths = append(paths, fe.Path)
		}
		if diff := cmp.Diff([]string{"thing_name", "mqtt.port"}, paths); diff != "" {
			t.Errorf("Load error paths (-want +got):\n%s\n%v", diff, err)
		}
	})
}

// The samples in configs/ must stay valid; only the files they point at may
// be missing on this machine.
func TestSampleConfigs(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "configs"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d sample configs in %s, want at least 2", len(files), dir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(data, dir)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, fe := range FieldErrors(c.Validate()) {
				// The drivers of sensors/all are not in this test binary.
				if !errors.Is(fe, fs.ErrNotExist) && !strings.HasSuffix(fe.Path, ".type") {
					t.Errorf("Validate: %v", fe)
				}
			}
			if !strings.HasPrefix(filepath.Base(f), "chocolate-box") {
				return
			}
			if c.ThingName != "chocolate-box-1" {
				t.Errorf("thing_name = %q, want chocolate-box-1", c.ThingName)
			}
			var got []string
			for _, p := range c.DeviceParts() {
				got = append(got, p.Name+":"+p.Type+":"+p.Role+":"+p.AlarmEvent())
			}
			if want := "[bme280:bme280::bme280 buzzer:output::buzzer contact:input:alarm:lid_open led:output::led motion:input:alarm:motion]"; fmt.Sprint(got) != want {
				t.Errorf("parts = %v, want %s", got, want)
			}
		})
	}
}

// FuzzParse: Parse never panics, Validate never panics on what Parse
// accepts, and whatever Parse accepts re-marshals and re-parses to an equal
// Config.
func FuzzParse(f *testing.F) {
	seeds := []string{
		`{}`,
		`{"thing_name":"box-1","mqtt":{"endpoint":"127.0.0.1","root_ca":"ca.pem","port":443,"alpn":true}}`,
		`{"state_dir":"rel","identity":{"cert":"../c","key":"/k"}}`,
		`{"sensors":{"motion":{"driver":"sim"},"contact":null,"bme280":{"driver":"i2c","address":119},"outputs":[{"name":"led","driver":"gpio","pin":"GPIO27"}]}}`,
		`{"sensors":{"outputs":[]}}`,
		`{"temperature":{"max_c":-0},"outbox":{"max_bytes":1e6}}`,
		`{"mqtt":{"prot":1}}`,
		`{"mqtt":{"port":"x"}} trailing`,
		`[[[[[[`,
		"\xef\xbb\xbf{}",
		`{"thing_name":"\ud800"}`,
		`{"identity":{"key_store":"tpm","tpm":{"device":"tcp://127.0.0.1:2321","handle":"0x81000010"}}}`,
		`{"identity":{"tpm":{"handle":2164260880}}}`,
	}
	if files, _ := filepath.Glob(filepath.Join("..", "..", "configs", "*.json")); len(files) > 0 {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				seeds = append(seeds, string(b))
			}
		}
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "/base")
		if err != nil {
			if len(FieldErrors(err)) == 0 {
				t.Fatalf("error is not a FieldError: %v", err)
			}
			return
		}
		_ = c.Validate()
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		c2, err := Parse(out, "/base")
		if err != nil {
			t.Fatalf("re-Parse of %s: %v", out, err)
		}
		if diff := cmp.Diff(c, c2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "..", "configs", "chocolate-box-pi.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, "/etc/iotagent"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseTPM(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want TPM
	}{
		{"defaults", `{}`, TPM{Device: "/dev/tpmrm0", Handle: 0x81000010}},
		{"hex string", `{"identity":{"tpm":{"handle":"0x81000011"}}}`, TPM{Device: "/dev/tpmrm0", Handle: 0x81000011}},
		{"upper-case hex", `{"identity":{"tpm":{"handle":"0X8100001A"}}}`, TPM{Device: "/dev/tpmrm0", Handle: 0x8100001A}},
		{"decimal string", `{"identity":{"tpm":{"handle":"2164260881"}}}`, TPM{Device: "/dev/tpmrm0", Handle: 0x81000011}},
		{"number", `{"identity":{"tpm":{"handle":2164260882}}}`, TPM{Device: "/dev/tpmrm0", Handle: 0x81000012}},
		{"device only", `{"identity":{"key_store":"tpm","tpm":{"device":"tcp://127.0.0.1:2321"}}}`, TPM{Device: "tcp://127.0.0.1:2321", Handle: 0x81000010}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in), "/etc/iotagent")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.Identity.TPM); diff != "" {
				t.Errorf("identity.tpm (-want +got):\n%s", diff)
			}
		})
	}
	if got, _ := DefaultTPMHandle.MarshalText(); string(got) != "0x81000010" {
		t.Errorf("MarshalText = %s, want 0x81000010", got)
	}
}

func TestParseLocalAPI(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want LocalAPI
	}{
		{"defaults", `{}`, LocalAPI{Enabled: true, Socket: "/run/iotagent/iotagent.sock"}},
		{"relative socket resolves against the file", `{"localapi":{"socket":"run/a.sock","group":"iotagent"}}`,
			LocalAPI{Enabled: true, Socket: "/etc/iotagent/run/a.sock", Group: "iotagent"}},
		{"disabled", `{"localapi":{"enabled":false}}`, LocalAPI{Socket: "/run/iotagent/iotagent.sock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in), "/etc/iotagent")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.LocalAPI); diff != "" {
				t.Errorf("localapi (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Parse([]byte(`{"localapi":{"sock":"/x"}}`), "/"); err == nil || !strings.Contains(err.Error(), `"localapi.sock"`) {
		t.Errorf("unknown localapi key: %v", err)
	}
}
