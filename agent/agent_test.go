package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sensortest"
)

const waitLimit = 20 * time.Second

// observer collects what a device sends, as the AWS console's test client would.
type observer struct {
	alarms, warnings, telemetry, reported chan map[string]any
}

func observe(sim *cloud.Sim, thing string) *observer {
	o := &observer{
		alarms: make(chan map[string]any, 1024), warnings: make(chan map[string]any, 64),
		telemetry: make(chan map[string]any, 1024), reported: make(chan map[string]any, 256),
	}
	o.attach(sim, thing)
	return o
}

func (o *observer) attach(sim *cloud.Sim, thing string) {
	to := func(ch chan map[string]any) broker.Handler {
		return func(_ *broker.Principal, _ string, p []byte) {
			var m map[string]any
			if json.Unmarshal(p, &m) == nil {
				ch <- m
			}
		}
	}
	sim.Broker().Handle("alarms/"+thing, to(o.alarms))
	sim.Broker().Handle("warnings/"+thing, to(o.warnings))
	sim.Broker().Handle("telemetry/"+thing, to(o.telemetry))
	sim.Broker().Handle("$aws/things/"+thing+"/shadow/update", func(_ *broker.Principal, _ string, p []byte) {
		var u struct {
			State struct {
				Reported map[string]any `json:"reported"`
			} `json:"state"`
		}
		if json.Unmarshal(p, &u) == nil && u.State.Reported != nil {
			o.reported <- u.State.Reported
		}
	})
}

// waitFor returns the first message on ch that ok accepts.
func waitFor(t *testing.T, what string, ch <-chan map[string]any, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case m := <-ch:
			if ok(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// path reads a nested value such as "alarm.armed" from a JSON object.
func path(m map[string]any, p string) any {
	var v any = m
	for _, k := range strings.Split(p, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

type device struct {
	cfg             config.Config
	motion, contact *sensortest.FakeInput
	env             *sensortest.FakeSensor
	led             *sensortest.FakeOutput
	hw              *agent.Hardware
	agent           *agent.Agent
	stop            func() // stops the agent and waits; idempotent
}

// newDevice registers thing in sim and prepares an agent for it with fake
// sensors.
func newDevice(t *testing.T, sim *cloud.Sim, thing string) *device {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	idDir := filepath.Join(dir, "identity")
	if err := cloud.WriteCredentials(idDir, "device", certPEM, keyPEM, sim.CA().CertPEM); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(sim.MQTTAddrs()[0])
	cfg := config.Default()
	cfg.ThingName = thing
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.MQTT.Endpoint = host
	cfg.MQTT.Port, _ = strconv.Atoi(port)
	cfg.MQTT.RootCA = filepath.Join(idDir, "root-ca.pem")
	cfg.Identity.Cert = filepath.Join(idDir, "device.crt")
	cfg.Identity.Key = filepath.Join(idDir, "device.key")
	cfg.Telemetry.IntervalS = 3600
	cfg.LocalAPI.Socket = filepath.Join(dir, "iotagent.sock")
	cfg.Sensors.Outputs = []config.Output{{Name: "led", Driver: "sim"}}
	d := &device{
		cfg: cfg, motion: sensortest.NewFakeInput("motion"), contact: sensortest.NewFakeInput("contact"),
		env: sensortest.NewFakeSensor("bme280"), led: sensortest.NewFakeOutput("led"),
	}
	d.env.Set(sensors.Reading{TemperatureC: 21.5, HumidityPct: 40, PressureKPa: 101.3})
	d.hw = &agent.Hardware{Motion: d.motion, Contact: d.contact, Env: d.env, Outputs: map[string]sensors.Output{"led": d.led}}
	return d
}

func (d *device) start(t *testing.T, opt agent.Options) {
	t.Helper()
	opt.Hardware = d.hw
	if opt.Version == "" {
		opt.Version = "test-1.0"
	}
	a, err := agent.New(d.cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	d.agent = a
	d.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent Run: %v", err)
				}
			case <-time.After(waitLimit):
				t.Errorf("agent did not stop within %s", waitLimit)
			}
		})
	}
	t.Cleanup(d.stop)
}

// waitStatus polls the agent's status until ok, for what has no message
// to wait on (work done offline).
func (d *device) waitStatus(t *testing.T, what string, ok func(agent.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !ok(d.agent.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; status %+v", what, d.agent.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func updateDesired(t *testing.T, sim *cloud.Sim, thing, desired string) {
	t.Helper()
	if _, err := sim.Shadows().Update(thing, "", []byte(`{"state":{"desired":`+desired+`}}`)); err != nil {
		t.Fatalf("update desired %s: %v", desired, err)
	}
}

func TestAgentWithIotsim(t *testing.T) {
	sim := cloudtest.Start(t, "")
	obs := observe(sim, "box-1")
	d := newDevice(t, sim, "box-1")
	d.start(t, agent.Options{})

	first := waitFor(t, "first telemetry", obs.telemetry, func(map[string]any) bool { return true })
	if first["thing"] != "box-1" || path(first, "sensors.bme280.temperature_c") != 21.5 || first["armed"] != false {
		t.Errorf("first telemetry = %v", first)
	}
	waitFor(t, "first report", obs.reported, func(r map[string]any) bool { return path(r, "agent.version") == "test-1.0" })

	// Desired state from the cloud: armed, LED on, lower temperature limit.
	updateDesired(t, sim, "box-1", `{"alarm":{"armed":true},"outputs":{"led":true},"sensors":{"bme280":{"limits":{"temperature_c":{"high":25}}}}}`)
	waitFor(t, "armed report", obs.reported, func(r map[string]any) bool {
		return path(r, "alarm.armed") == true && path(r, "outputs.led") == true && path(r, "sensors.bme280.limits.temperature_c.high") == 25.0
	})
	if !d.led.On() {
		t.Error("LED is off after desired outputs.led = true")
	}

	// Motion while armed: an alarm, and the alarm reported.
	d.motion.Trigger(true)
	alarm := waitFor(t, "motion alarm", obs.alarms, func(map[string]any) bool { return true })
	for k, want := range map[string]any{"thing": "box-1", "sensor": "motion", "event": "motion", "message": "motion detected"} {
		if alarm[k] != want {
			t.Errorf("alarm[%q] = %v, want %v", k, alarm[k], want)
		}
	}
	if ts, _ := alarm["timestamp"].(float64); ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("alarm timestamp = %v, want about now", alarm["timestamp"])
	}
	waitFor(t, "alarm report", obs.reported, func(r map[string]any) bool {
		return path(r, "alarm.state") == "on" && path(r, "alarm.last_sensor") == "motion" && path(r, "sensors.motion.active") == true
	})
	d.motion.Trigger(false)

	// An invalid desired value is not applied and comes back as an error.
	updateDesired(t, sim, "box-1", `{"telemetry":{"interval_s":"fast"}}`)
	waitFor(t, "last_error report", obs.reported, func(r map[string]any) bool {
		s, _ := r["last_error"].(string)
		return strings.Contains(s, "desired.telemetry.interval_s") && path(r, "telemetry.interval_s") == 3600.0
	})

	// Disarm: the alarm clears and motion raises nothing; then the lid
	// does, once armed again. The first alarm seen must be the lid's.
	updateDesired(t, sim, "box-1", `{"alarm":{"armed":false},"telemetry":{"interval_s":3600}}`)
	waitFor(t, "disarmed report", obs.reported, func(r map[string]any) bool {
		return path(r, "alarm.armed") == false && path(r, "alarm.state") == "off" && r["last_error"] == ""
	})
	d.motion.Trigger(true)
	waitFor(t, "motion report while disarmed", obs.reported, func(r map[string]any) bool { return path(r, "sensors.motion.active") == true })
	updateDesired(t, sim, "box-1", `{"alarm":{"armed":true}}`)
	waitFor(t, "re-armed report", obs.reported, func(r map[string]any) bool { return path(r, "alarm.armed") == true })
	d.contact.Trigger(true)
	lid := waitFor(t, "lid alarm", obs.alarms, func(map[string]any) bool { return true })
	if lid["sensor"] != "contact" || lid["event"] != "lid_open" {
		t.Errorf("first alarm after disarming = %v, want the lid's (motion while disarmed must raise none)", lid)
	}

	// Too warm: a warning once the next reading comes (interval 1 s now).
	d.env.Set(sensors.Reading{TemperatureC: 26.25, HumidityPct: 40, PressureKPa: 101.3})
	updateDesired(t, sim, "box-1", `{"telemetry":{"interval_s":1}}`)
	warn := waitFor(t, "temperature warning", obs.warnings, func(map[string]any) bool { return true })
	if warn["event"] != "temperature_high" || warn["temperature_c"] != 26.25 || warn["max_c"] != 25.0 {
		t.Errorf("warning = %v", warn)
	}
	waitFor(t, "sensors.bme280.warning report", obs.reported, func(r map[string]any) bool { return path(r, "sensors.bme280.warning.temperature_c") == "high" })

	// The shadow ends in sync: no delta left.
	doc, err := sim.Shadows().Get("box-1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		State struct {
			Delta map[string]any `json:"delta"`
		} `json:"state"`
	}
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	if got.State.Delta != nil {
		t.Errorf("shadow still has a delta: %v", got.State.Delta)
	}
}

// TestIotsimRestartMidStream restarts iotsim while the agent streams QoS1
// alarms: every one arrives (duplicates are allowed and counted).
func TestIotsimRestartMidStream(t *testing.T) {
	dataDir := t.TempDir()
	sim := cloudtest.Start(t, dataDir)
	addr := sim.MQTTAddrs()[0]
	obs := observe(sim, "box-2")
	d := newDevice(t, sim, "box-2")
	d.cfg.Alarm.Armed = true
	d.cfg.MQTT.BackoffMaxS = 1
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	d.start(t, agent.Options{Now: func() time.Time { return time.Unix(clock.Add(1), 0) }})
	waitFor(t, "first report", obs.reported, func(map[string]any) bool { return true })

	const total = 300
	seen := map[float64]int{}
	var mu sync.Mutex
	count := func(m map[string]any) (unique, dups int) {
		mu.Lock()
		defer mu.Unlock()
		if m != nil {
			ts, _ := m["timestamp"].(float64)
			seen[ts]++
		}
		for _, n := range seen {
			dups += n - 1
		}
		return len(seen), dups
	}
	go func() {
		for i := 0; i < total; i++ {
			d.motion.Trigger(true)
			d.motion.Trigger(false)
		}
	}()
	deadline := time.After(60 * time.Second)
	restarted := false
	for {
		select {
		case m := <-obs.alarms:
			unique, dups := count(m)
			if !restarted && unique >= total/5 {
				restarted = true
				if err := sim.Close(); err != nil {
					t.Fatal(err)
				}
				// The observer is attached before iotsim listens: an alarm the
				// reconnecting agent sends at once must not go unseen.
				sim2, err := cloud.Start(cloud.Options{DataDir: dataDir, MQTTAddr: addr, HTTPAddr: "127.0.0.1:0",
					BeforeListen: func(s *cloud.Sim) { obs.attach(s, "box-2") }})
				if err != nil {
					t.Fatalf("restart iotsim: %v", err)
				}
				t.Cleanup(func() { sim2.Close() })
			}
			if unique == total {
				t.Logf("%d alarms arrived across the restart, %d duplicates", unique, dups)
				return
			}
		case <-deadline:
			unique, dups := count(nil)
			t.Fatalf("after 60s: %d of %d alarms arrived (%d duplicates)", unique, total, dups)
		}
	}
}

// TestOfflineAlarmsSurviveAgentRestart queues alarms while iotsim is down,
// restarts the agent on the same state dir, and expects every alarm once
// iotsim is back.
func TestOfflineAlarmsSurviveAgentRestart(t *testing.T) {
	dataDir := t.TempDir()
	sim, err := cloud.Start(cloud.Options{DataDir: dataDir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := sim.MQTTAddrs()[0]
	obs := observe(sim, "box-3")
	d := newDevice(t, sim, "box-3")
	d.cfg.Alarm.Armed = true
	d.cfg.MQTT.BackoffMaxS = 1
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	opt := agent.Options{Now: func() time.Time { return time.Unix(clock.Add(1), 0) }}
	d.start(t, opt)
	waitFor(t, "first report", obs.reported, func(map[string]any) bool { return true })

	if err := sim.Close(); err != nil { // the network goes away
		t.Fatal(err)
	}
	const n = 20
	for i := 0; i < n; i++ {
		d.motion.Trigger(true)
		d.motion.Trigger(false)
	}
	d.waitStatus(t, "the offline alarms to be queued", func(s agent.Status) bool {
		return s.Events == 2*n && s.Outbox.Len >= n && !s.Connected
	})
	d.stop() // a power cut would do the same: the outbox is on disk

	obs = &observer{alarms: make(chan map[string]any, 1024), warnings: make(chan map[string]any, 64),
		telemetry: make(chan map[string]any, 1024), reported: make(chan map[string]any, 256)}
	sim, err = cloud.Start(cloud.Options{DataDir: dataDir, MQTTAddr: addr, HTTPAddr: "127.0.0.1:0",
		BeforeListen: func(s *cloud.Sim) { obs.attach(s, "box-3") }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	d.motion = sensortest.NewFakeInput("motion") // a fresh boot: the sensor is idle
	d.hw.Motion = d.motion
	d.start(t, opt)
	seen := map[float64]bool{}
	for len(seen) < n {
		m := waitFor(t, "queued alarms", obs.alarms, func(map[string]any) bool { return true })
		ts, _ := m["timestamp"].(float64)
		seen[ts] = true
	}
}

// TestALPNPort443Mode connects the agent through a listener in AWS's
// port-443 mode (ALPN x-amzn-mqtt-ca).
func TestALPNPort443Mode(t *testing.T) {
	sim := cloudtest.StartWith(t, cloud.Options{ExtraMQTTAddrs: []string{"127.0.0.1:0"}})
	obs := observe(sim, "box-4")
	d := newDevice(t, sim, "box-4")
	_, port, _ := net.SplitHostPort(sim.MQTTAddrs()[1])
	d.cfg.MQTT.Port, _ = strconv.Atoi(port)
	d.cfg.MQTT.ALPN = true
	d.start(t, agent.Options{})
	waitFor(t, "first report over ALPN", obs.reported, func(r map[string]any) bool { return path(r, "agent.version") != nil })
}

// TestSystemdNotify runs the agent as systemd would (NOTIFY_SOCKET,
// WATCHDOG_USEC) and reads what it says: READY=1 only after the shadow is
// synced, then WATCHDOG=1 while healthy, STOPPING=1 at the end.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "100000") // pet every 50 ms

	sim := cloudtest.Start(t, "")
	obs := observe(sim, "box-5")
	d := newDevice(t, sim, "box-5")
	d.start(t, agent.Options{})

	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(waitLimit):
			t.Fatal("no notify message")
		}
		return ""
	}
	ready := next()
	if !strings.HasPrefix(ready, "READY=1") {
		t.Fatalf("first notify message = %q, want READY=1", ready)
	}
	select {
	case <-obs.reported: // the report that completed the sync came before READY
	default:
		t.Error("READY=1 came before the agent had reported its state to the shadow")
	}
	if err := d.agent.Healthy(); err != nil {
		t.Errorf("Healthy after sync: %v", err)
	}
	for i := 0; i < 3; i++ {
		if m := next(); m != "WATCHDOG=1" {
			t.Fatalf("notify message %q, want WATCHDOG=1", m)
		}
	}
	d.stop()
	for {
		m := next()
		if m == "STOPPING=1" {
			return
		}
		if m != "WATCHDOG=1" {
			t.Fatalf("unexpected notify message %q while stopping", m)
		}
	}
}

// TestDefenderReportsAccepted runs the agent with Device Defender on: its
// reports reach iotsim and are accepted, and the interval follows desired.
func TestDefenderReportsAccepted(t *testing.T) {
	for _, format := range []string{"json", "cbor"} {
		t.Run(format, func(t *testing.T) {
			sim := cloudtest.Start(t, "")
			thing := "box-d" + format
			obs := observe(sim, thing)
			d := newDevice(t, sim, thing)
			d.cfg.Defender.Enabled = true
			d.cfg.Defender.Format = format
			d.start(t, agent.Options{DefenderFirstDelay: time.Millisecond})
			d.waitStatus(t, "an accepted Defender report", func(s agent.Status) bool {
				return s.Defender != nil && s.Defender.Accepted >= 1
			})
			if st := d.agent.Status(); st.Defender.Rejected != 0 {
				t.Errorf("rejected reports: %+v", st.Defender)
			}
			updateDesired(t, sim, thing, `{"defender":{"interval_s":600}}`)
			waitFor(t, "defender interval report", obs.reported, func(r map[string]any) bool {
				return path(r, "defender.interval_s") == 600.0 && path(r, "defender.enabled") == true
			})
		})
	}
}

// TestFleetProvisioningAtFirstStart starts an agent that has only iotsim's
// claim certificate: it provisions itself (keys path and CSR path), runs
// as the new thing, and after a restart reuses its identity.
func TestFleetProvisioningAtFirstStart(t *testing.T) {
	for _, csr := range []bool{false, true} {
		t.Run(fmt.Sprintf("use_csr=%v", csr), func(t *testing.T) {
			sim := cloudtest.Start(t, "")
			ep := sim.Endpoint()
			serial := fmt.Sprintf("SN-%v-0042", csr)
			obs := observe(sim, serial)
			dir := t.TempDir()
			host, port, _ := net.SplitHostPort(ep.MQTTEndpoint)
			cfg := config.Default()
			cfg.StateDir = filepath.Join(dir, "state")
			cfg.Identity.Cert = filepath.Join(cfg.StateDir, "identity", "device.crt")
			cfg.Identity.Key = filepath.Join(cfg.StateDir, "identity", "device.key")
			cfg.MQTT.Endpoint = host
			cfg.MQTT.Port, _ = strconv.Atoi(port)
			cfg.MQTT.RootCA = ep.RootCA
			cfg.LocalAPI.Socket = filepath.Join(dir, "iotagent.sock")
			cfg.Provisioning = config.Provisioning{ClaimCert: ep.ClaimCert, ClaimKey: ep.ClaimKey, Template: ep.ProvisioningTemplate,
				Params: map[string]string{"SerialNumber": serial}, UseCSR: csr}
			d := &device{cfg: cfg, hw: &agent.Hardware{}}
			d.start(t, agent.Options{})
			waitFor(t, "a report from the provisioned thing", obs.reported, func(r map[string]any) bool { return path(r, "agent.version") != nil })
			d.stop()
			for len(obs.telemetry) > 0 { // the first run's
				<-obs.telemetry
			}

			d.start(t, agent.Options{})
			// Nothing changed, so no report: the start-up telemetry shows it runs as the thing.
			waitFor(t, "telemetry after the restart", obs.telemetry, func(m map[string]any) bool { return m["thing"] == serial })
			certs, err := sim.Registry().ThingPrincipals(serial)
			if err != nil || len(certs) != 1 {
				t.Fatalf("certificates of %s after a restart: %v %v; want exactly one", serial, certs, err)
			}
		})
	}
}

// TestCertificateRotation rotates the running agent's certificate through
// iotsim, and after a restart the agent connects with the new one.
func TestCertificateRotation(t *testing.T) {
	sim := cloudtest.Start(t, "")
	obs := observe(sim, "box-r")
	certOf := make(chan string, 64)
	sim.Broker().Handle("telemetry/box-r", func(p *broker.Principal, _ string, _ []byte) { certOf <- p.CertificateID })
	d := newDevice(t, sim, "box-r")
	d.cfg.Rotation.Template = sim.Endpoint().ProvisioningTemplate
	d.start(t, agent.Options{})
	waitFor(t, "first report", obs.reported, func(map[string]any) bool { return true })
	oldID := <-certOf

	res, err := d.agent.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if res.OldCertificateID != oldID || res.NewCertificateID == oldID {
		t.Fatalf("rotation result %+v; the old certificate was %s", res, oldID)
	}
	waitFor(t, "the old certificate id in reported", obs.reported, func(r map[string]any) bool {
		return path(r, "identity.rotated_from") == oldID
	})
	certs, err := sim.Registry().ThingPrincipals("box-r")
	if err != nil || len(certs) != 2 {
		t.Fatalf("certificates of box-r after rotation: %v %v; want the old and the new", certs, err)
	}

	d.stop()
	for len(certOf) > 0 {
		<-certOf
	}
	d.start(t, agent.Options{})
	select {
	case id := <-certOf:
		if id != res.NewCertificateID {
			t.Errorf("after a restart the agent connects with %s, want the new certificate %s", id, res.NewCertificateID)
		}
	case <-time.After(waitLimit):
		t.Fatal("no telemetry after the restart")
	}
}
