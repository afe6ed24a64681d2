package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// chocolateBoxRule is the cloud side of the chocolate security system, in
// AWS's syntax (docs/cloud-side.md has it too): every alarm goes to a
// notifications topic and to a function's webhook.
const chocolateBoxRule = `{
  "sql": "SELECT *, topic(2) AS box FROM 'alarms/+'",
  "awsIotSqlVersion": "2016-03-23",
  "actions": [
    {"republish": {"roleArn": "arn:aws:iam::123456789012:role/iot-republish", "topic": "notifications/${topic(2)}", "qos": 1}},
    {"http": {"url": "WEBHOOK", "headers": [{"key": "x-box", "value": "${topic(2)}"}]}}
  ]
}`

// TestAlarmThroughRule: the real agent, under the default device policy,
// raises an alarm on iotsim; a topic rule republishes it to a
// notifications topic and posts it to a local webhook.
func TestAlarmThroughRule(t *testing.T) {
	sim := cloudtest.Start(t, "")
	posts := make(chan map[string]any, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		m["x-box header"] = r.Header.Get("x-box")
		posts <- m
	}))
	t.Cleanup(hook.Close)
	var payload json.RawMessage = []byte(strings.ReplaceAll(chocolateBoxRule, "WEBHOOK", hook.URL+"/alarm"))
	if err := sim.Client().Call(context.Background(), "iot", http.MethodPost, "/rules/chocolate_box_alarms", nil, payload, nil); err != nil {
		t.Fatalf("create-topic-rule: %v", err)
	}
	notes := subscribe(t, sim, "phone", "notifications/#")

	d := newDevice(t, sim, "box-1")
	d.start(t, agent.Options{})
	updateDesired(t, sim, "box-1", `{"alarm":{"armed":true}}`)
	d.waitStatus(t, "armed", func(s agent.Status) bool { return s.Armed })
	d.motion.Trigger(true)

	select {
	case m := <-notes:
		var a map[string]any
		if err := json.Unmarshal(m.Payload(), &a); err != nil {
			t.Fatal(err)
		}
		if m.Topic() != "notifications/box-1" || a["box"] != "box-1" || a["event"] != "motion" || a["thing"] != "box-1" {
			t.Errorf("notification %s %s", m.Topic(), m.Payload())
		}
	case <-time.After(waitLimit):
		t.Fatal("no notification")
	}
	select {
	case p := <-posts:
		if p["event"] != "motion" || p["box"] != "box-1" || p["x-box header"] != "box-1" {
			t.Errorf("webhook got %v", p)
		}
	case <-time.After(waitLimit):
		t.Fatal("the webhook got nothing")
	}
}

// subscribe connects a client that may subscribe to anything (a phone
// app's backend) and returns its messages on filter.
func subscribe(t *testing.T, sim *cloud.Sim, thing, filter string) <-chan paho.Message {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	reg := sim.Registry()
	if _, err := reg.CreatePolicy(thing+"-policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`); err != nil {
		t.Fatal(err)
	}
	ids, _ := reg.ThingPrincipals(thing)
	c, err := reg.DescribeCertificate(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.AttachPolicy(thing+"-policy", c.ARN); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sim.CA().CertPEM)
	msgs := make(chan paho.Message, 64)
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + sim.MQTTAddrs()[0]).SetClientID(thing).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}).
		SetAutoReconnect(false).SetConnectTimeout(waitLimit))
	if tok := cl.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", thing, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	if tok := cl.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { msgs <- m }); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return msgs
}
