package console_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

const waitFor = 20 * time.Second

// device is a real MQTT client of a thing, over mutual TLS.
type device struct {
	paho.Client
	msgs chan paho.Message
}

func connectDevice(t testing.TB, sim *cloud.Sim, thing string, filters ...string) *device {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sim.CA().CertPEM)
	d := &device{msgs: make(chan paho.Message, 256)}
	o := paho.NewClientOptions().AddBroker("ssl://" + sim.MQTTAddrs()[0]).SetClientID(thing).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}).
		SetAutoReconnect(false).SetConnectTimeout(waitFor).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { d.msgs <- m })
	d.Client = paho.NewClient(o)
	if tok := d.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", thing, tok.Error())
	}
	t.Cleanup(func() { d.Disconnect(0) })
	for _, f := range filters {
		if tok := d.Subscribe(f, 1, nil); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	return d
}

func (d *device) publish(t testing.TB, topic, payload string) {
	t.Helper()
	if tok := d.Publish(topic, 1, false, payload); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// next returns the next message on topic, skipping others, failing
// after waitFor.
func (d *device) next(t testing.TB, topic string) paho.Message {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case m := <-d.msgs:
			if m.Topic() == topic {
				return m
			}
		case <-deadline:
			t.Fatalf("no message on %s within %s", topic, waitFor)
			return nil
		}
	}
}

// consoleURL splits the sim's console_url into the clean base URL
// (http://host:port/console) and the token.
func consoleURL(t testing.TB, sim *cloud.Sim) (base, token string) {
	t.Helper()
	u, err := url.Parse(sim.Endpoint().ConsoleURL)
	if err != nil || u.Query().Get("token") == "" {
		t.Fatalf("console_url %q: %v", sim.Endpoint().ConsoleURL, err)
	}
	token = u.Query().Get("token")
	u.RawQuery = ""
	return u.String(), token
}

func startSim(t testing.TB) *cloud.Sim {
	t.Helper()
	return cloudtest.Start(t, "")
}

// noRedirect is an HTTP client that shows redirects instead of following
// them.
var noRedirect = &http.Client{
	Timeout:       waitFor,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func hostOf(raw string) string {
	u, _ := url.Parse(raw)
	return strings.Split(u.Host, ":")[0]
}
