package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/qualify"
)

// iotsim qualify against a running simulator: a table or JSON report, exit
// status 0 when the cases pass, 1 when one fails, 2 on a usage or setup
// error.
func TestQualifyCommand(t *testing.T) {
	dataDir := t.TempDir()
	sim := cloudtest.Start(t, dataDir)
	certPEM, keyPEM, err := sim.CreateThing("dev-q")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sim.CA().CertPEM)
	// A device that connects once and never comes back.
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + sim.MQTTAddrs()[0]).SetClientID("dev-q").
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}).
		SetProtocolVersion(4).SetAutoReconnect(false).SetKeepAlive(30 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Subscribe("$aws/things/dev-q/shadow/update/delta", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	out, err := iotsim(t, "qualify", "--thing", "dev-q", "--case", "connect", "--json", "--quiet", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("qualify --case connect: %v\n%s", err, out)
	}
	var rep qualify.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Results) != 1 || !rep.Results[0].Pass || rep.Passed != 1 {
		t.Fatalf("report %s (%v), want connect passed", out, err)
	}
	if !strings.Contains(rep.Results[0].Detail, "MQTT 3.1.1, clean session") {
		t.Errorf("connect detail %q does not describe the connection", rep.Results[0].Detail)
	}

	out, err = iotsim(t, "qualify", "--thing", "dev-q", "--case", "connect", "--case", "resubscribe", "--timeout", "5s", "--data-dir", dataDir)
	if !errors.Is(err, errQualifyFailed) || exitCode(err) != 1 {
		t.Fatalf("a failing case: err %v (exit %d), want exit 1\n%s", err, exitCode(err), out)
	}
	for _, want := range []string{"CASE", "connect ", "PASS", "resubscribe ", "FAIL", "the device to reconnect", "2 cases, 1 passed, 1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	for _, args := range [][]string{
		{"qualify", "--data-dir", dataDir},
		{"qualify", "--thing", "dev-q", "--case", "nap", "--data-dir", dataDir},
		{"qualify", "--thing", "nobody", "--data-dir", dataDir},
		{"qualify", "--thing", "dev-q", "--publish-topic", "a/#/b", "--data-dir", dataDir},
		{"qualify", "--thing", "dev-q", "--shadow-key", "outputs..led", "--data-dir", dataDir},
		{"qualify", "--thing", "dev-q", "--job-document", "{not json", "--data-dir", dataDir},
		{"qualify", "--thing", "dev-q", "--data-dir", t.TempDir() + "/none"},
	} {
		out, err := iotsim(t, append(args, "--quiet")...)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%q: err %v (exit %d), want a usage or setup error (exit 2)\n%s", args, err, exitCode(err), out)
		}
	}
}
