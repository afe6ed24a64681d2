package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/internal/logring"
	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sensortest"
)

// box is a thing registered in a running iotsim with its credentials and
// a config file on disk.
type box struct {
	sim     *cloud.Sim
	dir     string
	cfgPath string
	cfg     map[string]any
	socket  string
}

func newBox(t *testing.T, sim *cloud.Sim, thing string) *box {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	id := filepath.Join(dir, "identity")
	if err := cloud.WriteCredentials(id, "device", certPEM, keyPEM, sim.CA().CertPEM); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	host, port, _ := net.SplitHostPort(sim.MQTTAddrs()[0])
	p, _ := strconv.Atoi(port)
	b := &box{sim: sim, dir: dir, cfgPath: filepath.Join(dir, "config.json"), socket: filepath.Join(sockDir, "a.sock")}
	b.cfg = map[string]any{
		"thing_name": thing,
		"state_dir":  filepath.Join(dir, "state"),
		"mqtt":       map[string]any{"endpoint": host, "port": p, "root_ca": filepath.Join(id, "root-ca.pem"), "connect_timeout_s": 5},
		"identity":   map[string]any{"cert": filepath.Join(id, "device.crt"), "key": filepath.Join(id, "device.key")},
		"localapi":   map[string]any{"socket": b.socket},
		"sensors":    map[string]any{"motion": map[string]any{"driver": "sim"}, "bme280": map[string]any{"driver": "sim"}},
	}
	b.write(t)
	return b
}

func (b *box) set(t *testing.T, section, key string, v any) {
	t.Helper()
	if section == "" {
		b.cfg[key] = v
	} else {
		b.cfg[section].(map[string]any)[key] = v
	}
	b.write(t)
}

func (b *box) write(t *testing.T) {
	t.Helper()
	data, _ := json.Marshal(b.cfg)
	if err := os.WriteFile(b.cfgPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (b *box) diag(t *testing.T, mod func(*diagEnv)) map[string]checkResult {
	t.Helper()
	env := diagEnv{cfgPath: b.cfgPath, timeout: 5 * time.Second, now: time.Now, resolver: net.DefaultResolver,
		ntpSynced: func() (bool, bool) { return true, true }}
	if mod != nil {
		mod(&env)
	}
	out := map[string]checkResult{}
	var order []string
	for _, r := range runDiag(context.Background(), env) {
		out[r.Check] = r
		order = append(order, r.Check)
	}
	want := "config identity agent degraded subscriptions publishes outbox thing name state files key store certificate clock dns tcp tls mqtt round trip hardware"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("checks in order %q, want %q", got, want)
	}
	return out
}

// expect checks the status of each named check and that its detail (and
// fix) contain the given text.
func expect(t *testing.T, res map[string]checkResult, check, status, text string) {
	t.Helper()
	r := res[check]
	if r.Status != status || !strings.Contains(r.Detail+" fix: "+r.Fix, text) {
		t.Errorf("%s = %s %q (fix %q), want %s containing %q", check, r.Status, r.Detail, r.Fix, status, text)
	}
}

func TestDiagAgainstIotsim(t *testing.T) {
	sim := cloudtest.Start(t, "")

	t.Run("all pass", func(t *testing.T) {
		b := newBox(t, sim, "diag-ok")
		res := b.diag(t, nil)
		for _, c := range []string{"config", "agent", "state files", "key store", "certificate", "clock", "dns", "tcp", "tls", "mqtt", "round trip", "hardware"} {
			if res[c].Status != pass {
				t.Errorf("%s = %s %q, want PASS", c, res[c].Status, res[c].Detail)
			}
		}
		expect(t, res, "round trip", pass, "shadow get answered on rejected") // no shadow yet: 404 is an answer
		expect(t, res, "certificate", pass, "chain verified to root_ca")
		// the command: exit 0, text and JSON
		out, err := iotagent("diag", "--config", b.cfgPath)
		if exitCode(err) != exitOK || !strings.Contains(out, "0 failed") {
			t.Errorf("iotagent diag: exit %d (%v)\n%s", exitCode(err), err, out)
		}
		out, err = iotagent("diag", "--json", "--config", b.cfgPath)
		var rs []checkResult
		if json.Unmarshal([]byte(out), &rs) != nil || len(rs) != 18 || err != nil && exitCode(err) != exitOK {
			t.Errorf("diag --json: %v\n%s", err, out)
		}
	})

	t.Run("wrong CA", func(t *testing.T) {
		b := newBox(t, sim, "diag-ca")
		other := filepath.Join(b.dir, "other-ca")
		ca, err := pki.LoadOrCreateCA(other)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(b.dir, "other.pem"), ca.CertPEM, 0o644)
		b.set(t, "mqtt", "root_ca", filepath.Join(b.dir, "other.pem"))
		res := b.diag(t, nil)
		expect(t, res, "tls", fail, "CA mismatch: the server's certificate is issued by")
		expect(t, res, "tls", fail, "point mqtt.root_ca at the CA that signs the server")
		expect(t, res, "mqtt", skip, "needs TLS")
		out, err := iotagent("diag", "--config", b.cfgPath)
		if exitCode(err) != exitFail || !strings.Contains(out, "FAIL  tls") {
			t.Errorf("diag with the wrong CA: exit %d\n%s", exitCode(err), out)
		}
	})

	t.Run("expired certificate", func(t *testing.T) {
		b := newBox(t, sim, "diag-exp")
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		past := *sim.CA()
		past.Now = func() time.Time { return time.Now().AddDate(0, 0, -40) }
		der, err := past.IssueDevice(&key.PublicKey, pkix.Name{CommonName: "diag-exp"}, time.Now().AddDate(0, 0, -10))
		if err != nil {
			t.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM, _ := pki.MarshalKeyPEM(key)
		if err := cloud.WriteCredentials(filepath.Join(b.dir, "identity"), "device", certPEM, keyPEM, sim.CA().CertPEM); err != nil {
			t.Fatal(err)
		}
		res := b.diag(t, nil)
		expect(t, res, "certificate", fail, "EXPIRED on")
		expect(t, res, "certificate", fail, "(10 days ago)")
	})

	t.Run("key and certificate mismatch", func(t *testing.T) {
		b := newBox(t, sim, "diag-mis")
		_, otherKey, err := sim.CA().NewKeysAndCertificate("someone-else")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b.dir, "identity", "device.key"), otherKey, 0o600); err != nil {
			t.Fatal(err)
		}
		res := b.diag(t, nil)
		expect(t, res, "key store", pass, "signs")
		expect(t, res, "certificate", fail, "does not belong to the key in the key store")
		expect(t, res, "mqtt", skip, "needs a usable key and certificate")
	})

	t.Run("unknown host", func(t *testing.T) {
		b := newBox(t, sim, "diag-dns")
		b.set(t, "mqtt", "endpoint", "no-such-endpoint.iot.example")
		res := b.diag(t, func(e *diagEnv) { e.resolver = nxdomainResolver() })
		expect(t, res, "dns", fail, "no-such-endpoint.iot.example does not exist (NXDOMAIN)")
		expect(t, res, "dns", fail, "describe-endpoint")
		expect(t, res, "tcp", skip, "needs DNS")
	})

	t.Run("closed port", func(t *testing.T) {
		b := newBox(t, sim, "diag-port")
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		b.set(t, "mqtt", "port", port)
		res := b.diag(t, nil)
		expect(t, res, "tcp", fail, fmt.Sprintf("nothing listens on port %d", port))
		expect(t, res, "tls", skip, "needs TCP")
	})

	t.Run("certificate not registered", func(t *testing.T) {
		b := newBox(t, sim, "diag-unreg")
		// same CA, but a certificate the registry has never seen
		certPEM, keyPEM, err := sim.CA().NewKeysAndCertificate("diag-unreg")
		if err != nil {
			t.Fatal(err)
		}
		if err := cloud.WriteCredentials(filepath.Join(b.dir, "identity"), "device", certPEM, keyPEM, sim.CA().CertPEM); err != nil {
			t.Fatal(err)
		}
		res := b.diag(t, nil)
		expect(t, res, "tls", pass, "verified")
		expect(t, res, "mqtt", fail, "registered and ACTIVE")
	})

	t.Run("clock before the certificate", func(t *testing.T) {
		b := newBox(t, sim, "diag-clock")
		res := b.diag(t, func(e *diagEnv) {
			e.now = func() time.Time { return time.Date(1970, 1, 1, 0, 1, 0, 0, time.UTC) }
			e.ntpSynced = func() (bool, bool) { return false, true }
		})
		expect(t, res, "clock", fail, "no RTC (a Raspberry Pi has none) and NTP has not synced yet")
		expect(t, res, "clock", fail, "timedatectl")
	})

	t.Run("invalid config", func(t *testing.T) {
		b := newBox(t, sim, "diag-cfg")
		b.set(t, "mqtt", "port", 0)
		res := b.diag(t, nil)
		expect(t, res, "config", fail, "mqtt.port")
		expect(t, res, "tls", skip, "needs a valid config")
	})

	t.Run("agent running and connected", func(t *testing.T) {
		b := newBox(t, sim, "diag-run")
		startAgent(t, b)
		res := b.diag(t, nil)
		expect(t, res, "agent", pass, "running and connected")
		expect(t, res, "tls", pass, "verified")
		expect(t, res, "mqtt", warn, "AWS allows one connection per client ID")
		expect(t, res, "mqtt", warn, "systemctl stop iotagent")
		expect(t, res, "round trip", warn, "skipped")
	})
}

// startAgent runs an agent for b with fake sensors until the test ends and
// waits until its API says it is connected.
func startAgent(t *testing.T, b *box) *sensortest.FakeSensor {
	t.Helper()
	cfg, err := loadConfigWith(b.cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	return startAgentCfg(t, cfg, []string{"--config", b.cfgPath})
}

// startAgentCfg runs an agent with cfg until the test ends and waits until
// iotagent status with flags says it is connected and in sync.
func startAgentCfg(t *testing.T, cfg config.Config, flags []string) *sensortest.FakeSensor {
	t.Helper()
	return startAgentHW(t, cfg, flags, nil)
}

// startAgentHW is startAgentCfg with the samplers of the config's parts
// (by part name) added to the agent's hardware.
func startAgentHW(t *testing.T, cfg config.Config, flags []string, samplers map[string]sensors.Sampler) *sensortest.FakeSensor {
	t.Helper()
	cfg.Telemetry.IntervalS = 3600
	env := sensortest.NewFakeSensor("bme280")
	env.Set(sensors.Reading{TemperatureC: 21.5, HumidityPct: 40, PressureKPa: 101.3})
	hw := &agent.Hardware{Motion: sensortest.NewFakeInput("motion"), Contact: sensortest.NewFakeInput("contact"), Env: env,
		Outputs: map[string]sensors.Output{"led": sensortest.NewFakeOutput("led")}, Samplers: samplers}
	if len(cfg.Parts) == 0 {
		cfg.Sensors.Outputs = []config.Output{{Name: "led", Driver: "sim"}}
	}
	ring := logring.New(100)
	level := new(slog.LevelVar)
	a, err := agent.New(cfg, agent.Options{Logger: slog.New(ring.Handler(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: level}))),
		Level: level, Hardware: hw, Version: "cli-test"})
	if err != nil {
		t.Fatal(err)
	}
	a.SetLogRing(ring)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := iotagent(append([]string{"status", "--json"}, flags...)...)
		if err == nil && strings.Contains(out, `"in_sync": true`) {
			return env
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not connected and in sync: %v\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nxdomainResolver answers every query with NXDOMAIN, as a DNS server
// does for a name that does not exist.
func nxdomainResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			for {
				var n uint16
				if binary.Read(server, binary.BigEndian, &n) != nil {
					return
				}
				q := make([]byte, n)
				if _, err := io.ReadFull(server, q); err != nil || len(q) < 12 {
					return
				}
				q[2] = 0x81 | (q[2] & 0x01) // QR, RD copied
				q[3] = 0x83                 // RA, RCODE=3 NXDOMAIN
				for i := 6; i < 12; i++ {
					q[i] = 0 // no answer, authority or additional records
				}
				q = trimToQuestion(q) // drop any EDNS OPT record: the additional count is 0 now
				resp := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
				if _, err := server.Write(append(resp, q...)); err != nil {
					return
				}
			}
		}()
		return client, nil
	}}
}

// trimToQuestion cuts a DNS message after its first question.
func trimToQuestion(m []byte) []byte {
	i := 12
	for i < len(m) && m[i] != 0 {
		i += int(m[i]) + 1
	}
	i += 1 + 4 // root label, type, class
	if i > len(m) {
		return m
	}
	return m[:i]
}
