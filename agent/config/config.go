package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Config is the agent's whole configuration. The JSON keys are the file
// format; configs/README.md documents each of them.
type Config struct {
	ThingName   string      `json:"thing_name"`
	StateDir    string      `json:"state_dir"`
	Log         Log         `json:"log"`
	MQTT        MQTT        `json:"mqtt"`
	Identity    Identity    `json:"identity"`
	Topics      Topics      `json:"topics"`
	Outbox      Outbox      `json:"outbox"`
	Telemetry   Telemetry   `json:"telemetry"`
	Alarm       Alarm       `json:"alarm"`
	Temperature Temperature `json:"temperature"`
	Sensors     Sensors     `json:"sensors"` // the old fixed chocolate box; see Legacy
	// Parts describe the device: named inputs, outputs and sensors.
	Parts    map[string]Part `json:"parts"`
	Defender Defender        `json:"defender"`
	LocalAPI LocalAPI        `json:"localapi"`
	// Provisioning, when ClaimCert is set, makes the agent provision itself
	// on a start with no identity yet (fleet provisioning by claim).
	Provisioning Provisioning `json:"provisioning"`
	Rotation     Rotation     `json:"rotation"`
	Jobs         Jobs         `json:"jobs"`
	OTA          OTA          `json:"ota"`
}

// Jobs is the agent's AWS IoT Jobs runner and the job handlers it offers.
type Jobs struct {
	Enabled        bool `json:"enabled"`
	StepTimeoutMin int  `json:"step_timeout_min"` // minutes without progress before a job is FAILED
	// DownloadDirs are the directories download-file jobs may write into
	// (and below); none: every download-file job is rejected.
	DownloadDirs     []string   `json:"download_dirs"`
	DownloadMaxBytes int64      `json:"download_max_bytes"`
	DownloadHosts    []string   `json:"download_hosts"` // URL hosts downloads may come from; none: any
	RunCommand       RunCommand `json:"run_command"`
}

// RunCommand configures the run-command job handler, which exists only
// when Allowed is not empty.
type RunCommand struct {
	User    string   `json:"user"`    // the unprivileged user commands run as
	Allowed []string `json:"allowed"` // absolute paths of the only programs a job may run
}

// OTA is the over-the-air update of the agent's own binary (ota jobs).
type OTA struct {
	Enabled       bool     `json:"enabled"`
	TrustedKeys   []string `json:"trusted_keys"`  // minisign public keys ("RW…")
	AllowedHosts  []string `json:"allowed_hosts"` // hosts artifacts may come from; none: any
	MaxStarts     int      `json:"max_starts"`    // starts the new version gets to commit
	TrialTimeoutS int      `json:"trial_timeout_s"`
}

// Rotation is automatic certificate rotation: a new key and certificate
// when the current certificate is within Days of expiry.
type Rotation struct {
	Days int `json:"days"` // 0 turns automatic rotation off (iotagent cert rotate still works)
	// Template is the provisioning template RegisterThing attaches the new
	// certificate through; "" means provisioning.template.
	Template string `json:"template"`
	// TPMSpareHandle is the second persistent handle the TPM key
	// alternates with (the first is identity.tpm.handle).
	TPMSpareHandle TPMHandle `json:"tpm_spare_handle"`
}

// RotationTemplate is the template rotation uses.
func (c *Config) RotationTemplate() string {
	if c.Rotation.Template != "" {
		return c.Rotation.Template
	}
	return c.Provisioning.Template
}

// Provisioning is fleet provisioning by claim: on the first start the agent
// connects with the claim certificate, gets its own certificate and
// registers its thing through Template.
type Provisioning struct {
	ClaimCert string            `json:"claim_cert"` // claim certificate PEM; "" = provisioning off
	ClaimKey  string            `json:"claim_key"`  // its private key (PEM, mode 0600)
	Template  string            `json:"template"`   // provisioning template name
	Params    map[string]string `json:"params"`     // extra RegisterThing parameters; SerialNumber defaults to the device's
	UseCSR    bool              `json:"use_csr"`    // CreateCertificateFromCsr with the key store's key (always so with the TPM)
	Format    string            `json:"format"`     // "json" (default) or "cbor"
}

// Enabled reports whether fleet provisioning is configured.
func (p Provisioning) Enabled() bool { return p.ClaimCert != "" }

// LocalAPI is the agent's local HTTP API on a unix socket, which the
// technician's CLI (iotagent status, logs, ...) talks to. The socket has
// mode 0660: root and the members of Group may use it.
type LocalAPI struct {
	Enabled bool   `json:"enabled"`
	Socket  string `json:"socket"` // absolute path, at most 100 bytes
	Group   string `json:"group"`  // group name or numeric gid; "" keeps the agent's own group
}

// DefaultLocalAPISocket is where the local API listens by default, with
// the default state dir; with another state dir, STATE/iotagent.sock.
const DefaultLocalAPISocket = "/run/iotagent/iotagent.sock"

// Log configures the agent's logger.
type Log struct {
	Level  string `json:"level"`  // debug, info, warn or error
	Format string `json:"format"` // text or json
}

// MQTT is the connection to AWS IoT Core (or iotsim).
type MQTT struct {
	Endpoint        string `json:"endpoint"`          // host name or IP address; no scheme, no port
	Port            int    `json:"port"`              // 8883, or 443 with ALPN
	ALPN            bool   `json:"alpn"`              // offer ALPN protocol x-amzn-mqtt-ca
	ServerName      string `json:"server_name"`       // TLS server name (SNI) override; "" means Endpoint, see TLSServerName
	RootCA          string `json:"root_ca"`           // PEM bundle of the CAs that sign the server's certificate
	KeepAliveS      int    `json:"keepalive_s"`       // MQTT keep-alive, 30..1200 s
	CleanSession    bool   `json:"clean_session"`     // false keeps a persistent session
	ConnectTimeoutS int    `json:"connect_timeout_s"` // TCP+TLS+CONNACK deadline
	BackoffMaxS     int    `json:"backoff_max_s"`     // ceiling of the reconnect backoff
	// AckTimeoutS is how long a PUBACK or SUBACK may take before the
	// connection is given up and made again (MQTT resends an
	// unacknowledged QoS 1 PUBLISH only on a new connection).
	AckTimeoutS int `json:"ack_timeout_s"`
}

// TLSServerName is the name the agent sends as SNI and checks the server's
// certificate against: ServerName if set, else Endpoint. It is a method
// rather than a default filled in by Parse so that overriding the endpoint
// with a flag also changes it.
func (m MQTT) TLSServerName() string {
	if m.ServerName != "" {
		return m.ServerName
	}
	return m.Endpoint
}

// Identity is where the device's certificate and private key live.
type Identity struct {
	Cert     string `json:"cert"`      // device certificate, PEM
	KeyStore string `json:"key_store"` // "file" or "tpm"
	Key      string `json:"key"`       // key_store "file": private key file, PEM, mode 0600
	TPM      TPM    `json:"tpm"`       // key_store "tpm": where the key lives
}

// TPM is the TPM 2.0 that holds the device key when key_store is "tpm".
type TPM struct {
	Device string    `json:"device"` // "/dev/tpmrm0", or "tcp://HOST:PORT" for swtpm
	Handle TPMHandle `json:"handle"` // persistent handle of the key, 0x81000000..0x817FFFFF
}

// TPMHandle is a TPM persistent handle. In the file it is a number or a
// string in hexadecimal ("0x81000010") or decimal; it prints in hex.
type TPMHandle uint32

func (h TPMHandle) String() string { return fmt.Sprintf("0x%08x", uint32(h)) }

// MarshalText writes the handle in hex, which Parse reads back.
func (h TPMHandle) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// Topics are the agent's own MQTT topics. "{thing}" expands to the thing
// name; see Config.Topic.
type Topics struct {
	Telemetry string `json:"telemetry"`
	Alarms    string `json:"alarms"`
	Warnings  string `json:"warnings"`
}

// Outbox bounds the durable queue of QoS 1 publishes kept while offline.
// When either limit is reached the oldest message is dropped.
// MemoryMessages bounds the queue in memory where messages wait while the
// disk refuses writes (full, failing, read-only).
type Outbox struct {
	MaxMessages    int   `json:"max_messages"`
	MaxBytes       int64 `json:"max_bytes"`
	MemoryMessages int   `json:"memory_messages"`
}

// Telemetry is the periodic sensor report.
type Telemetry struct {
	IntervalS int `json:"interval_s"`
}

// Alarm is the alarm's state before the shadow says otherwise.
type Alarm struct {
	Armed bool `json:"armed"`
}

// Temperature is the over-temperature warning threshold.
type Temperature struct {
	MaxC float64 `json:"max_c"`
}

// Defender is the AWS IoT Device Defender metrics report.
type Defender struct {
	Enabled   bool   `json:"enabled"`
	Format    string `json:"format"`     // "json" (long key names) or "cbor" (short key names)
	IntervalS int    `json:"interval_s"` // seconds between reports; AWS advises at least 300
}

// Sensors lists the fitted hardware. A nil input means not fitted.
type Sensors struct {
	Motion  *Input   `json:"motion"`
	Contact *Input   `json:"contact"`
	BME280  *BME280  `json:"bme280"`
	Outputs []Output `json:"outputs"`
}

// Input is a digital input: a PIR motion sensor or a reed (lid) contact.
type Input struct {
	Driver     string `json:"driver"`      // "gpio" or "sim"
	Pin        string `json:"pin"`         // gpio: periph pin name, e.g. "GPIO4"
	Pull       string `json:"pull"`        // "down", "up" or "none"
	ActiveLow  bool   `json:"active_low"`  // the sensor is active when the pin reads low
	DebounceMs int    `json:"debounce_ms"` // 0..10000
	SimFIFO    string `json:"sim_fifo"`    // sim: FIFO whose lines drive the input
}

// BME280 is the temperature/humidity/pressure sensor.
type BME280 struct {
	Driver          string  `json:"driver"`            // "i2c" or "sim"
	Bus             string  `json:"bus"`               // i2c: bus name, e.g. "1" for /dev/i2c-1
	Address         int     `json:"address"`           // 118 (0x76) or 119 (0x77)
	SimTemperatureC float64 `json:"sim_temperature_c"` // sim: starting temperature
	SimFIFO         string  `json:"sim_fifo"`          // sim: FIFO of temperatures in °C, one a line
}

// Output is a digital output such as an LED or a buzzer.
type Output struct {
	Name      string `json:"name"`   // unique, [a-z0-9_]+; the shadow addresses it by this name
	Driver    string `json:"driver"` // "gpio" or "sim"
	Pin       string `json:"pin"`    // gpio: periph pin name
	ActiveLow bool   `json:"active_low"`
}

// Defaults that are not simply zero.
const (
	DefaultStateDir = "/var/lib/iotagent"
	DefaultPort     = 8883

	DefaultTPMDevice = "/dev/tpmrm0"
	DefaultTPMHandle = TPMHandle(0x81000010)

	DefaultDownloadMaxBytes = 64 << 20
)

// IdentityFile is where fleet provisioning keeps the device identity
// (agent/provision writes it): once it exists, the thing name comes from
// it.
func (c *Config) IdentityFile() string {
	return filepath.Join(c.StateDir, "identity", "identity.json")
}

// Default returns the configuration with every default set. ThingName,
// MQTT.Endpoint and MQTT.RootCA have no default and must come from the file
// or flags.
func Default() Config {
	c := Config{
		StateDir: DefaultStateDir,
		Log:      Log{Level: "info", Format: "text"},
		MQTT: MQTT{
			Port:            DefaultPort,
			KeepAliveS:      60,
			ConnectTimeoutS: 10,
			BackoffMaxS:     120,
			AckTimeoutS:     30,
		},
		Identity: Identity{KeyStore: "file", TPM: TPM{Device: DefaultTPMDevice, Handle: DefaultTPMHandle}},
		Topics: Topics{
			Telemetry: "telemetry/{thing}",
			Alarms:    "alarms/{thing}",
			Warnings:  "warnings/{thing}",
		},
		Outbox:      Outbox{MaxMessages: 10000, MaxBytes: 16 << 20, MemoryMessages: 1000},
		Telemetry:   Telemetry{IntervalS: 60},
		Temperature: Temperature{MaxC: 30},
		Defender:    Defender{Format: "json", IntervalS: 300},
		Rotation:    Rotation{Days: 30, TPMSpareHandle: DefaultTPMHandle + 1},
		LocalAPI:    LocalAPI{Enabled: true, Socket: DefaultLocalAPISocket},
		Jobs:        Jobs{Enabled: true, StepTimeoutMin: 10, DownloadMaxBytes: DefaultDownloadMaxBytes},
		OTA:         OTA{MaxStarts: 3, TrialTimeoutS: 120},
	}
	c.fillDerived()
	return c
}

// defaultInput is what an input object in the file starts from.
func defaultInput() Input { return Input{Pull: "down", DebounceMs: 50} }

// defaultBME280 is what a bme280 object in the file starts from.
func defaultBME280() BME280 { return BME280{Bus: "1", Address: 0x76, SimTemperatureC: 21} }

// fillDerived sets the defaults that depend on other fields, where the field
// is still empty.
func (c *Config) fillDerived() {
	if c.StateDir == "" {
		return // Validate reports it; do not invent relative paths
	}
	if c.Identity.Cert == "" {
		c.Identity.Cert = filepath.Join(c.StateDir, "identity", "device.crt")
	}
	if c.Identity.Key == "" {
		c.Identity.Key = filepath.Join(c.StateDir, "identity", "device.key")
	}
	if c.LocalAPI.Socket == "" {
		c.LocalAPI.Socket = DefaultLocalAPISocket
		// An agent with its own state dir (run by hand, a second agent on
		// one machine) gets its own socket, where its user may create it;
		// every command given the same --state-dir finds it.
		if s := filepath.Join(c.StateDir, "iotagent.sock"); c.StateDir != DefaultStateDir && len(s) <= maxSocketPath {
			c.LocalAPI.Socket = s
		}
	}
	for name, in := range map[string]*Input{"motion": c.Sensors.Motion, "contact": c.Sensors.Contact} {
		if in != nil && in.Driver == "sim" && in.SimFIFO == "" {
			in.SimFIFO = filepath.Join(c.StateDir, "sim", name)
		}
	}
	if b := c.Sensors.BME280; b != nil && b.Driver == "sim" && b.SimFIFO == "" {
		b.SimFIFO = filepath.Join(c.StateDir, "sim", "bme280")
	}
	for name, p := range c.Parts {
		if p.Sim && p.SimFIFO == "" {
			p.SimFIFO = filepath.Join(c.StateDir, "sim", name)
			c.Parts[name] = p
		}
	}
}

// resolvePaths makes every relative path absolute against baseDir (the
// config file's directory) and cleans every path.
func (c *Config) resolvePaths(baseDir string) {
	for name, p := range c.Parts {
		if p.SimFIFO != "" {
			p.SimFIFO = resolve(baseDir, p.SimFIFO)
			c.Parts[name] = p
		}
	}
	for _, p := range c.paths() {
		if *p == "" {
			continue
		}
		if filepath.IsAbs(*p) {
			*p = filepath.Clean(*p)
		} else {
			*p = filepath.Join(baseDir, *p)
		}
	}
}

func resolve(baseDir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(baseDir, p)
}

// paths returns pointers to every field that holds a file path.
func (c *Config) paths() []*string {
	ps := []*string{&c.StateDir, &c.MQTT.RootCA, &c.Identity.Cert, &c.Identity.Key, &c.LocalAPI.Socket,
		&c.Provisioning.ClaimCert, &c.Provisioning.ClaimKey}
	for i := range c.Jobs.DownloadDirs {
		ps = append(ps, &c.Jobs.DownloadDirs[i])
	}
	if c.Sensors.Motion != nil {
		ps = append(ps, &c.Sensors.Motion.SimFIFO)
	}
	if c.Sensors.Contact != nil {
		ps = append(ps, &c.Sensors.Contact.SimFIFO)
	}
	if c.Sensors.BME280 != nil {
		ps = append(ps, &c.Sensors.BME280.SimFIFO)
	}
	return ps
}

// Topic expands "{thing}" in template to the thing name.
func (c *Config) Topic(template string) string {
	return strings.ReplaceAll(template, "{thing}", c.ThingName)
}
