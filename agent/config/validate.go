package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/iotagent/iotagent/ota"
)

// Limits Validate enforces (configs/README.md lists them too).
const (
	maxTopicBytes    = 256 // AWS IoT topic name limit
	maxTopicSlashes  = 7   // AWS IoT: at most 7 '/' in a topic
	minOutboxBytes   = 128 << 10
	maxOutboxBytes   = 1 << 30
	maxOutboxMessage = 1_000_000
	// The memory queue also stops at 1 MiB of topics and payloads.
	maxMemoryMessages = 100_000

	// TPM owner persistent handles (TCG registry of reserved handles).
	minTPMHandle TPMHandle = 0x81000000
	maxTPMHandle TPMHandle = 0x817FFFFF
)

// The name checks are byte-class checks rather than regexps: compiling
// regexps at start-up cost the agent 0.7 ms and 290 KB of heap it kept.
var (
	thingName    = nameClass{max: 128, upper: true, digits: true, extra: ":_-"} // [a-zA-Z0-9:_-]{1,128}
	outputName   = nameClass{max: 32, digits: true, extra: "_"}                 // [a-z0-9_]{1,32}
	templateName = nameClass{max: 36, upper: true, digits: true, extra: "_-"}   // [0-9A-Za-z_-]{1,36}
	pinName      = nameClass{max: 32, upper: true, digits: true, extra: "_"}    // [A-Za-z0-9_]{1,32}
	busName      = nameClass{max: 64, upper: true, digits: true, extra: "_/.-"} // [A-Za-z0-9_/.-]{1,64}
	groupName    = nameClass{max: 32, digits: true, extra: "_-"}                // [a-z_][a-z0-9_-]{0,31}
	groupID      = nameClass{max: 10, digits: true, noLetters: true}            // [0-9]{1,10}
)

// nameClass is a set of ASCII bytes and a length limit: lowercase letters
// always (unless noLetters), uppercase with upper, digits with digits,
// and the bytes in extra.
type nameClass struct {
	max                      int
	upper, digits, noLetters bool
	extra                    string
}

// match reports whether s has 1 to max bytes, all in the class.
func (n nameClass) match(s string) bool {
	if s == "" || len(s) > n.max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z':
			if n.noLetters {
				return false
			}
		case 'A' <= c && c <= 'Z':
			if !n.upper {
				return false
			}
		case '0' <= c && c <= '9':
			if !n.digits {
				return false
			}
		case strings.IndexByte(n.extra, c) < 0:
			return false
		}
	}
	return true
}

// Validate checks the whole configuration and reports every problem at
// once: the result joins one *FieldError per problem (errors.Is(err,
// ErrInvalid) holds for each). It checks that mqtt.root_ca exists, since
// the agent cannot connect without it; such an error also wraps
// fs.ErrNotExist. The device certificate and key may be missing (they are
// created by provisioning), but must not be directories.
func (c *Config) Validate() error {
	var p problems
	inv := func(path, format string, args ...any) { p.add(ErrInvalid, path, format, args...) }

	switch {
	case c.ThingName == "" && c.Provisioning.Enabled():
		// fleet provisioning names the thing
	case c.ThingName == "" && c.StateDir != "" && fileExists(c.IdentityFile()):
		// provisioned already: the identity names the thing
	case c.ThingName == "":
		inv("thing_name", "required (or configure provisioning.claim_cert): no identity in %s yet", c.IdentityFile())
	case !thingName.match(c.ThingName):
		inv("thing_name", "%q is not a valid thing name: want 1 to 128 of the characters a-z A-Z 0-9 : _ -", c.ThingName)
	}
	if c.StateDir == "" {
		inv("state_dir", "required")
	}
	oneOf(&p, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(&p, "log.format", c.Log.Format, "text", "json")

	// MQTT.
	if msg := hostProblem(c.MQTT.Endpoint); msg != "" {
		inv("mqtt.endpoint", "%s", msg)
	}
	switch {
	case c.MQTT.Port < 1 || c.MQTT.Port > 65535:
		inv("mqtt.port", "%d is not a TCP port (1..65535)", c.MQTT.Port)
	case c.MQTT.Port == 443 && !c.MQTT.ALPN:
		inv("mqtt.port", "443 needs \"alpn\": true (AWS IoT Core serves MQTT on 443 only with ALPN x-amzn-mqtt-ca)")
	}
	if c.MQTT.ServerName != "" {
		if msg := hostProblem(c.MQTT.ServerName); msg != "" {
			inv("mqtt.server_name", "%s", msg)
		}
	}
	checkFile(&p, "mqtt.root_ca", c.MQTT.RootCA, true)
	inRange(&p, "mqtt.keepalive_s", c.MQTT.KeepAliveS, 30, 1200)
	inRange(&p, "mqtt.connect_timeout_s", c.MQTT.ConnectTimeoutS, 1, 300)
	inRange(&p, "mqtt.backoff_max_s", c.MQTT.BackoffMaxS, 1, 3600)
	inRange(&p, "mqtt.ack_timeout_s", c.MQTT.AckTimeoutS, 1, 300)

	// Identity.
	checkFile(&p, "identity.cert", c.Identity.Cert, false)
	checkFile(&p, "identity.key", c.Identity.Key, false)
	if c.Identity.Key != "" && c.Identity.Key == c.Identity.Cert {
		inv("identity.key", "is the same file as identity.cert")
	}
	oneOf(&p, "identity.key_store", c.Identity.KeyStore, "file", "tpm")
	if msg := tpmDeviceProblem(c.Identity.TPM.Device); msg != "" {
		inv("identity.tpm.device", "%s", msg)
	}
	if h := c.Identity.TPM.Handle; h < minTPMHandle || h > maxTPMHandle {
		inv("identity.tpm.handle", "%v is not an owner persistent handle: want %v to %v", h, minTPMHandle, maxTPMHandle)
	}

	// Topics.
	for _, t := range []struct{ path, tmpl string }{
		{"topics.telemetry", c.Topics.Telemetry},
		{"topics.alarms", c.Topics.Alarms},
		{"topics.warnings", c.Topics.Warnings},
	} {
		if msg := c.topicProblem(t.tmpl); msg != "" {
			inv(t.path, "%s", msg)
		}
	}

	// Outbox, telemetry, temperature.
	inRange(&p, "outbox.max_messages", c.Outbox.MaxMessages, 1, maxOutboxMessage)
	inRange(&p, "outbox.memory_messages", c.Outbox.MemoryMessages, 1, maxMemoryMessages)
	if c.Outbox.MaxBytes < minOutboxBytes || c.Outbox.MaxBytes > maxOutboxBytes {
		inv("outbox.max_bytes", "%d is out of range: want %d (128 KiB, one maximum-size message) to %d (1 GiB)", c.Outbox.MaxBytes, minOutboxBytes, maxOutboxBytes)
	}
	inRange(&p, "telemetry.interval_s", c.Telemetry.IntervalS, 1, 86400)
	if !(c.Temperature.MaxC >= -40 && c.Temperature.MaxC <= 85) { // also catches NaN
		inv("temperature.max_c", "%g is out of range: want -40 to 85 (the BME280's range)", c.Temperature.MaxC)
	}
	oneOf(&p, "defender.format", c.Defender.Format, "json", "cbor")
	inRange(&p, "defender.interval_s", c.Defender.IntervalS, 5, 86400)

	if pr := c.Provisioning; pr.Enabled() {
		checkFile(&p, "provisioning.claim_cert", pr.ClaimCert, true)
		if pr.ClaimKey == "" {
			inv("provisioning.claim_key", "required with provisioning.claim_cert")
		} else {
			checkFile(&p, "provisioning.claim_key", pr.ClaimKey, true)
		}
		if !templateName.match(pr.Template) {
			inv("provisioning.template", "%q is not a provisioning template name: want 1 to 36 of a-z A-Z 0-9 _ -", pr.Template)
		}
		for k := range pr.Params {
			if k == "" || len(k) > 128 {
				inv("provisioning.params", "parameter name %q: want 1 to 128 characters", k)
			}
		}
	} else if pr.ClaimKey != "" || pr.Template != "" || len(pr.Params) > 0 || pr.UseCSR {
		inv("provisioning.claim_cert", "required when other provisioning settings are given")
	}
	if f := c.Provisioning.Format; f != "" {
		oneOf(&p, "provisioning.format", f, "json", "cbor")
	}

	inRange(&p, "rotation.days", c.Rotation.Days, 0, 3650)
	if t := c.Rotation.Template; t != "" && !templateName.match(t) {
		inv("rotation.template", "%q is not a provisioning template name: want 1 to 36 of a-z A-Z 0-9 _ -", t)
	}
	if h := c.Rotation.TPMSpareHandle; h < minTPMHandle || h > maxTPMHandle || h == c.Identity.TPM.Handle {
		inv("rotation.tpm_spare_handle", "%v: want an owner persistent handle (%v to %v) other than identity.tpm.handle", h, minTPMHandle, maxTPMHandle)
	}

	c.validateLocalAPI(&p)
	c.validateSensors(&p)
	c.validateJobs(&p)
	c.validateOTA(&p)
	return p.err()
}

// ValidateSensors checks only the sensors section, and state_dir that
// simulated sensors' pipes default to: what reading the sensors directly
// (iotagent sensors read --direct) needs, whatever the rest says.
func (c *Config) ValidateSensors() error {
	var p problems
	if c.StateDir == "" {
		p.add(ErrInvalid, "state_dir", "required")
	}
	c.validateSensors(&p)
	return p.err()
}

// Limits of the jobs and ota sections.
const (
	maxStepTimeoutMin   = 10080 // AWS IoT Jobs' stepTimeoutInMinutes limit (7 days)
	minDownloadMaxBytes = 1
	maxDownloadMaxBytes = 16 << 30
	maxOTAStarts        = 20
	minTrialTimeoutS    = 10
	maxTrialTimeoutS    = 3600
)

func (c *Config) validateJobs(p *problems) {
	j := c.Jobs
	inRange(p, "jobs.step_timeout_min", j.StepTimeoutMin, 1, maxStepTimeoutMin)
	for i, d := range j.DownloadDirs {
		path := fmt.Sprintf("jobs.download_dirs[%d]", i)
		switch {
		case d == "":
			p.add(ErrInvalid, path, "empty; want an absolute directory")
		case !filepath.IsAbs(d):
			p.add(ErrInvalid, path, "%q is not an absolute path", d)
		case filepath.Clean(d) == "/":
			p.add(ErrInvalid, path, "the root directory is not allowed; name a directory for downloads")
		}
	}
	if j.DownloadMaxBytes < minDownloadMaxBytes || j.DownloadMaxBytes > maxDownloadMaxBytes {
		p.add(ErrInvalid, "jobs.download_max_bytes", "%d is out of range: want %d to %d (16 GiB)", j.DownloadMaxBytes, minDownloadMaxBytes, int64(maxDownloadMaxBytes))
	}
	hostList(p, "jobs.download_hosts", j.DownloadHosts)
	rc := j.RunCommand
	if len(rc.Allowed) > 0 {
		switch rc.User {
		case "":
			p.add(ErrInvalid, "jobs.run_command.user", "required with jobs.run_command.allowed: the unprivileged user commands run as")
		case "root", "0":
			p.add(ErrInvalid, "jobs.run_command.user", "%q is root; want an unprivileged user", rc.User)
		}
	}
	seen := map[string]bool{}
	for i, prog := range rc.Allowed {
		path := fmt.Sprintf("jobs.run_command.allowed[%d]", i)
		switch {
		case prog == "" || !filepath.IsAbs(prog) || filepath.Clean(prog) != prog:
			p.add(ErrInvalid, path, "%q: want the clean absolute path of a program", prog)
		case seen[prog]:
			p.add(ErrInvalid, path, "%q is listed twice", prog)
		}
		seen[prog] = true
	}
}

func (c *Config) validateOTA(p *problems) {
	o := c.OTA
	if o.Enabled && len(o.TrustedKeys) == 0 {
		p.add(ErrInvalid, "ota.trusted_keys", "required with ota.enabled: the minisign public keys releases are signed with")
	}
	for i, k := range o.TrustedKeys {
		if _, err := ota.ParsePublicKey(k); err != nil {
			p.add(ErrInvalid, fmt.Sprintf("ota.trusted_keys[%d]", i), "not a minisign public key (want the \"RW…\" line of the .pub file): %v", err)
		}
	}
	hostList(p, "ota.allowed_hosts", o.AllowedHosts)
	inRange(p, "ota.max_starts", o.MaxStarts, 1, maxOTAStarts)
	inRange(p, "ota.trial_timeout_s", o.TrialTimeoutS, minTrialTimeoutS, maxTrialTimeoutS)
}

// hostList checks a list of URL hosts ("host" or "host:port").
func hostList(p *problems, path string, hosts []string) {
	for i, h := range hosts {
		name := h
		if hh, port, err := net.SplitHostPort(h); err == nil {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				p.add(ErrInvalid, fmt.Sprintf("%s[%d]", path, i), "%q: port %q is not a TCP port (1..65535)", h, port)
				continue
			}
			name = hh
		}
		if msg := hostProblem(name); msg != "" {
			p.add(ErrInvalid, fmt.Sprintf("%s[%d]", path, i), "%s", msg)
		}
	}
}

func (c *Config) validateSensors(p *problems) {
	pins := make(map[string]string) // gpio pin -> path of its first user
	usePin := func(path, pin string) {
		if first, ok := pins[pin]; ok {
			p.add(ErrInvalid, path+".pin", "%s is already used by %s", pin, first)
			return
		}
		pins[pin] = path
	}
	for _, in := range []struct {
		path string
		in   *Input
	}{{"sensors.motion", c.Sensors.Motion}, {"sensors.contact", c.Sensors.Contact}} {
		if in.in == nil {
			continue
		}
		validateInput(p, in.path, in.in)
		if in.in.Driver == "gpio" && pinName.match(in.in.Pin) {
			usePin(in.path, in.in.Pin)
		}
	}
	if b := c.Sensors.BME280; b != nil {
		switch b.Driver {
		case "i2c":
			if !busName.match(b.Bus) {
				p.add(ErrInvalid, "sensors.bme280.bus", "want an I²C bus name such as \"1\" (for /dev/i2c-1), got %q", b.Bus)
			}
		case "sim":
			if b.SimFIFO == "" {
				p.add(ErrInvalid, "sensors.bme280.sim_fifo", "required for driver \"sim\"")
			}
		default:
			p.add(ErrInvalid, "sensors.bme280.driver", "want \"i2c\" or \"sim\", got %q", b.Driver)
		}
		if b.Address != 0x76 && b.Address != 0x77 {
			p.add(ErrInvalid, "sensors.bme280.address", "want 118 (0x76) or 119 (0x77), got %d", b.Address)
		}
		if !(b.SimTemperatureC >= -40 && b.SimTemperatureC <= 85) {
			p.add(ErrInvalid, "sensors.bme280.sim_temperature_c", "%g is out of range: want -40 to 85", b.SimTemperatureC)
		}
	}
	names := make(map[string]int)
	for i, o := range c.Sensors.Outputs {
		path := fmt.Sprintf("sensors.outputs[%d]", i)
		switch {
		case o.Name == "":
			p.add(ErrInvalid, path+".name", "required")
		case !outputName.match(o.Name):
			p.add(ErrInvalid, path+".name", "%q is not a valid output name: want 1 to 32 of a-z 0-9 _", o.Name)
		default:
			if j, ok := names[o.Name]; ok {
				p.add(ErrInvalid, path+".name", "%q is already the name of sensors.outputs[%d]", o.Name, j)
			} else {
				names[o.Name] = i
			}
		}
		switch o.Driver {
		case "gpio":
			if pinProblem(p, path, o.Pin) {
				usePin(path, o.Pin)
			}
		case "sim":
		default:
			p.add(ErrInvalid, path+".driver", "want \"gpio\" or \"sim\", got %q", o.Driver)
		}
	}
	c.validateParts(p, pins)
}

func validateInput(p *problems, path string, in *Input) {
	switch in.Driver {
	case "gpio":
		pinProblem(p, path, in.Pin)
	case "sim":
		if in.SimFIFO == "" {
			p.add(ErrInvalid, path+".sim_fifo", "required for driver \"sim\"")
		}
	default:
		p.add(ErrInvalid, path+".driver", "want \"gpio\" or \"sim\", got %q", in.Driver)
	}
	oneOf(p, path+".pull", in.Pull, "down", "up", "none")
	inRange(p, path+".debounce_ms", in.DebounceMs, 0, 10000)
}

// pinProblem checks a gpio pin name and reports whether it is valid.
func pinProblem(p *problems, path, pin string) bool {
	switch {
	case pin == "":
		p.add(ErrInvalid, path+".pin", "required for driver \"gpio\" (a pin name such as \"GPIO4\")")
	case !pinName.match(pin):
		p.add(ErrInvalid, path+".pin", "%q is not a pin name: want letters, digits and _ such as \"GPIO4\"", pin)
	default:
		return true
	}
	return false
}

func oneOf(p *problems, path, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	p.add(ErrInvalid, path, "want one of %s; got %q", strings.Join(quoteAll(allowed), ", "), got)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func inRange(p *problems, path string, got, lo, hi int) {
	if got < lo || got > hi {
		p.add(ErrInvalid, path, "%d is out of range: want %d to %d", got, lo, hi)
	}
}

// checkFile reports a path that is empty, or names a directory, or (if
// mustExist) does not exist.
func checkFile(p *problems, path, file string, mustExist bool) {
	if file == "" {
		p.add(ErrInvalid, path, "required")
		return
	}
	fi, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if mustExist {
			p.addCause(ErrInvalid, fs.ErrNotExist, path, "%s does not exist", file)
		}
	case err != nil:
		p.addCause(ErrInvalid, err, path, "%v", err)
	case fi.IsDir():
		p.add(ErrInvalid, path, "%s is a directory, want a file", file)
	}
}

// hostProblem describes what is wrong with h as a host name or IP address
// to connect to, or returns "".
func hostProblem(h string) string {
	if h == "" {
		return "required"
	}
	if scheme, _, ok := strings.Cut(h, "://"); ok {
		return fmt.Sprintf("want a host name without a scheme; drop %q from %q", scheme+"://", h)
	}
	if net.ParseIP(h) != nil {
		return ""
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		return fmt.Sprintf("want a host name without a port; use %q and set \"port\": %s", host, port)
	}
	if len(h) > 253 {
		return fmt.Sprintf("host name is %d bytes, over the 253 limit", len(h))
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("%q is not a valid host name", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Sprintf("%q is not a valid host name (character %q)", h, r)
			}
		}
	}
	return ""
}

// topicProblem describes what is wrong with the topic template tmpl once
// expanded, or returns "". The rules are AWS IoT Core's for topic names.
func (c *Config) topicProblem(tmpl string) string {
	if tmpl == "" {
		return "required"
	}
	if strings.ContainsAny(strings.ReplaceAll(tmpl, "{thing}", ""), "{}") {
		return fmt.Sprintf("%q has an unknown placeholder; only {thing} is expanded", tmpl)
	}
	t := c.Topic(tmpl)
	switch {
	case !utf8.ValidString(t):
		return fmt.Sprintf("%q is not valid UTF-8", t)
	case strings.ContainsRune(t, 0):
		return "must not contain a NUL character"
	case strings.ContainsAny(t, "+#"):
		return fmt.Sprintf("%q contains a wildcard (+ or #); a topic name to publish to cannot", t)
	case strings.HasPrefix(t, "$"):
		return fmt.Sprintf("%q starts with $, which is reserved for AWS IoT's own topics", t)
	case len(t) > maxTopicBytes:
		return fmt.Sprintf("%q is %d bytes, over AWS IoT's %d-byte limit", t, len(t), maxTopicBytes)
	case strings.Count(t, "/") > maxTopicSlashes:
		return fmt.Sprintf("%q has %d slashes, over AWS IoT's limit of %d", t, strings.Count(t, "/"), maxTopicSlashes)
	}
	return ""
}

// tpmDeviceProblem describes what is wrong with d as identity.tpm.device, or
// returns "".
func tpmDeviceProblem(d string) string {
	if d == "" {
		return "required"
	}
	if rest, ok := strings.CutPrefix(d, "tcp://"); ok {
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return fmt.Sprintf("%q: want tcp://HOST:PORT, e.g. tcp://127.0.0.1:2321", d)
		}
		if msg := hostProblem(host); msg != "" {
			return fmt.Sprintf("%q: %s", d, msg)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65534 {
			return fmt.Sprintf("%q: port %q is not 1 to 65534 (the control port is PORT+1)", d, port)
		}
		return ""
	}
	if !strings.HasPrefix(d, "/") || strings.ContainsRune(d, 0) {
		return fmt.Sprintf("%q: want a device path such as \"/dev/tpmrm0\" or tcp://HOST:PORT", d)
	}
	return ""
}

// maxSocketPath is the longest local API socket path: the kernel allows
// 107 bytes, and the agent binds under a temporary name next to it first.
const maxSocketPath = 100

// validGroup accepts a group name (a lowercase letter or _ first) or a
// numeric gid.
func validGroup(g string) bool {
	if groupID.match(g) {
		return true
	}
	return groupName.match(g) && (g[0] == '_' || 'a' <= g[0] && g[0] <= 'z')
}

func (c *Config) validateLocalAPI(p *problems) {
	l := c.LocalAPI
	if !l.Enabled {
		return
	}
	switch {
	case l.Socket == "":
		p.add(ErrInvalid, "localapi.socket", "required when localapi.enabled is true")
	case len(l.Socket) > maxSocketPath:
		p.add(ErrInvalid, "localapi.socket", "%d bytes is over the %d-byte limit of a unix socket path here", len(l.Socket), maxSocketPath)
	case strings.ContainsRune(l.Socket, 0):
		p.add(ErrInvalid, "localapi.socket", "must not contain a NUL character")
	}
	if l.Group != "" && !validGroup(l.Group) {
		p.add(ErrInvalid, "localapi.group", "%q is not a group name or numeric gid", l.Group)
	}
}

func fileExists(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && !fi.IsDir()
}
