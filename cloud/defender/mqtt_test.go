package defender_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-cmp/cmp"

	agentdefender "github.com/iotagent/iotagent/agent/defender"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/defender"
	"github.com/iotagent/iotagent/cloud/pki"
)

const waitFor = 10 * time.Second

// device is a paho client connected to iotsim as a thing, with the
// messages it receives.
type device struct {
	paho.Client
	msgs chan paho.Message
}

func connect(t *testing.T, sim *cloud.Sim, thing string) *device {
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
	d := &device{msgs: make(chan paho.Message, 64)}
	o := paho.NewClientOptions().AddBroker("ssl://" + sim.MQTTAddrs()[0]).SetClientID(thing).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}).
		SetAutoReconnect(false).SetConnectTimeout(waitFor).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { d.msgs <- m })
	d.Client = paho.NewClient(o)
	if tok := d.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", thing, tok.Error())
	}
	t.Cleanup(func() { d.Disconnect(0) })
	return d
}

func ok(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("paho: %v", tok.Error())
	}
}

func (d *device) next(t *testing.T) paho.Message {
	t.Helper()
	select {
	case m := <-d.msgs:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message")
		return nil
	}
}

// reporter is the agent's reporter over this device's paho client.
func (d *device) reporter(t *testing.T, thing, format string, now func() time.Time) (*agentdefender.Reporter, chan agentdefender.Response) {
	t.Helper()
	answers := make(chan agentdefender.Response, 4)
	r, err := agentdefender.New(agentdefender.Options{
		Thing: thing, Format: format, StateDir: t.TempDir(), Now: now,
		Publish: func(_ context.Context, topic string, payload []byte) error {
			tok := d.Publish(topic, 1, false, payload)
			tok.WaitTimeout(waitFor)
			return tok.Error()
		},
		Subscribe: func(filter string, h func(string, []byte)) error {
			tok := d.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { h(m.Topic(), m.Payload()) })
			tok.WaitTimeout(waitFor)
			return tok.Error()
		},
		Custom:     func() agentdefender.Custom { return agentdefender.Custom{OutboxDepth: 2} },
		OnResponse: func(r agentdefender.Response) { answers <- r },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Subscribe(); err != nil {
		t.Fatal(err)
	}
	return r, answers
}

func answer(t *testing.T, ch chan agentdefender.Response) agentdefender.Response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitFor):
		t.Fatal("no answer to the report")
		return agentdefender.Response{}
	}
}

// TestAgentReportsToIotsim sends the agent's real report (from this
// machine's /proc) in JSON and in CBOR, and one that iotsim rejects.
func TestAgentReportsToIotsim(t *testing.T) {
	sim := cloudtest.Start(t, "")
	d := connect(t, sim, "box-1")
	ctx := context.Background()

	for _, format := range []string{agentdefender.FormatJSON, agentdefender.FormatCBOR} {
		r, answers := d.reporter(t, "box-1", format, nil)
		if err := r.Report(ctx); err != nil {
			t.Fatal(err)
		}
		a := answer(t, answers)
		st := r.Stats()
		if a.Status != "ACCEPTED" || a.ReportID != st.LastReportID || a.ThingName != "box-1" || st.Accepted != 1 {
			t.Errorf("%s: answer %+v, stats %+v", format, a, st)
		}
	}
	reps := sim.Defender().Reports("box-1")
	if len(reps) != 2 || reps[0].Format != "json" || reps[1].Format != "cbor" {
		t.Fatalf("stored reports: %+v", reps)
	}
	if c := reps[1].Metrics.CustomMetrics["outbox_depth"]; c.Number == nil || *c.Number != 2 {
		t.Errorf("custom metric outbox_depth = %+v", c)
	}
	// The real /proc of this machine lists the device's own connection
	// to iotsim.
	if reps[0].Metrics.Established == nil || !contains(reps[0].Metrics.Established.RemoteAddrs, "127.0.0.1") {
		t.Errorf("established connections %+v lack the one to iotsim", reps[0].Metrics.Established)
	}

	// A reporter whose clock is behind sends a lower report id: rejected
	// with AWS's error, counted and not resent.
	late, answers := d.reporter(t, "box-1", agentdefender.FormatJSON, func() time.Time { return time.Unix(1_000_000, 0) })
	if err := late.Report(ctx); err != nil {
		t.Fatal(err)
	}
	a := answer(t, answers)
	st := late.Stats()
	if a.Status != "REJECTED" || a.StatusDetails == nil || a.StatusDetails.ErrorCode != "InvalidPayload" || st.Rejected != 1 || st.Sent != 1 ||
		!strings.Contains(st.LastError, "not greater than the last report id") {
		t.Errorf("late report: answer %+v, stats %+v", a, st)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestRejectionsOverMQTT publishes bad reports and checks the answers.
func TestRejectionsOverMQTT(t *testing.T) {
	sim := cloudtest.Start(t, "")
	d := connect(t, sim, "box-2")
	const base = "$aws/things/box-2/defender/metrics/"
	for _, f := range []string{"json", "cbor"} {
		ok(t, d.Subscribe(base+f+"/accepted", 1, nil))
		ok(t, d.Subscribe(base+f+"/rejected", 1, nil))
	}
	badCBOR, _ := cbor.Marshal(map[string]any{"hed": map[string]any{"rid": 9, "v": "2.0"}, "met": map[string]any{}})
	tests := []struct {
		name, format string
		payload      []byte
		wantTopic    string
		wantID       *int64
		wantMsg      string
	}{
		{"malformed JSON", "json", []byte(`{"header":`), "json/rejected", nil, "Malformed metrics report"},
		{"wrong version", "json", []byte(`{"header":{"report_id":3,"version":"0.9"},"metrics":{}}`), "json/rejected", ptr[int64](3), "Unsupported report version"},
		{"bad port", "json", []byte(`{"header":{"report_id":4,"version":"1.0"},"metrics":{"listening_tcp_ports":{"ports":[{"port":0}],"total":1}}}`), "json/rejected", ptr[int64](4), "is not a port"},
		{"accepted", "json", []byte(`{"header":{"report_id":10,"version":"1.0"},"metrics":{}}`), "json/accepted", ptr[int64](10), ""},
		{"repeated id", "json", []byte(`{"header":{"report_id":10,"version":"1.0"},"metrics":{}}`), "json/rejected", ptr[int64](10), "not greater than the last report id 10"},
		{"CBOR wrong version", "cbor", badCBOR, "cbor/rejected", ptr[int64](9), "Unsupported report version"},
		{"CBOR malformed", "cbor", []byte{0xbf}, "cbor/rejected", nil, "Malformed metrics report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok(t, d.Publish(base+tt.format, 1, false, tt.payload))
			m := d.next(t)
			if m.Topic() != base+tt.wantTopic {
				t.Fatalf("answer on %s, want %s", m.Topic(), base+tt.wantTopic)
			}
			var got defender.Response
			var err error
			if tt.format == "cbor" {
				err = cbor.Unmarshal(m.Payload(), &got)
			} else {
				err = json.Unmarshal(m.Payload(), &got)
			}
			if err != nil {
				t.Fatalf("answer %q: %v", m.Payload(), err)
			}
			if got.ThingName != "box-2" || got.Timestamp == 0 || !cmp.Equal(tt.wantID, got.ReportID) {
				t.Errorf("answer %+v", got)
			}
			if tt.wantMsg == "" {
				if got.Status != "ACCEPTED" || got.StatusDetails != nil {
					t.Errorf("answer %+v, want ACCEPTED", got)
				}
				return
			}
			if got.Status != "REJECTED" || got.StatusDetails == nil || got.StatusDetails.ErrorCode != "InvalidPayload" ||
				!strings.Contains(got.StatusDetails.ErrorMessage, tt.wantMsg) {
				t.Errorf("answer %+v, want REJECTED InvalidPayload %q", got, tt.wantMsg)
			}
		})
	}
	// The raw JSON uses AWS's capitalised statusDetails keys.
	ok(t, d.Publish(base+"json", 1, false, []byte(`{}`)))
	if m := d.next(t); !strings.Contains(string(m.Payload()), `"statusDetails":{"ErrorCode":"InvalidPayload","ErrorMessage":`) {
		t.Errorf("raw rejection %s", m.Payload())
	}
}

func ptr[T any](v T) *T { return &v }

// TestDetectOverMQTT: a device-side behaviour goes in alarm and clears on
// real reports; a cloud-side one (messages sent) alarms on real traffic.
func TestDetectOverMQTT(t *testing.T) {
	sim := cloudtest.Start(t, "")
	svc := sim.Defender()
	two, one := 2, 1
	_, err := svc.CreateSecurityProfile(defender.SecurityProfile{Name: "box", Behaviors: []defender.Behavior{
		{Name: "few-ports", Metric: "aws:num-listening-tcp-ports", Criteria: &defender.Criteria{
			ComparisonOperator: "less-than", Value: &defender.MetricValue{Count: ptr[int64](3)},
			ConsecutiveDatapointsToAlarm: &two, ConsecutiveDatapointsToClear: &one}},
		{Name: "quiet", Metric: "aws:num-messages-sent", Criteria: &defender.Criteria{
			ComparisonOperator: "less-than-equals", Value: &defender.MetricValue{Count: ptr[int64](3)}, DurationSeconds: ptr(300)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AttachSecurityProfile("box", "arn:aws:iot:us-east-1:123456789012:all/registered-things"); err != nil {
		t.Fatal(err)
	}
	d := connect(t, sim, "box-3")
	const topic = "$aws/things/box-3/defender/metrics/json"
	ok(t, d.Subscribe(topic+"/accepted", 1, nil))
	send := func(id, total int) {
		t.Helper()
		ok(t, d.Publish(topic, 1, false, fmt.Appendf(nil, `{"header":{"report_id":%d,"version":"1.0"},"metrics":{"listening_tcp_ports":{"ports":[],"total":%d}}}`, id, total)))
		d.next(t) // accepted: Detect has run
	}
	active := func() []string {
		var out []string
		for _, a := range svc.ListActiveViolations(defender.Filter{ThingName: "box-3"}) {
			out = append(out, a.Behavior.Name)
		}
		return out
	}
	send(1, 5)
	if a := active(); len(a) != 0 {
		t.Fatalf("one bad datapoint raised %v", a)
	}
	send(2, 6)
	if diff := cmp.Diff([]string{"few-ports"}, active()); diff != "" {
		t.Fatalf("after two bad datapoints (-want +got):\n%s", diff)
	}
	send(3, 1)
	if a := active(); len(a) != 0 {
		t.Fatalf("not cleared: %v", a)
	}
	// Three reports and one more message: 4 sent in the window.
	ok(t, d.Publish("telemetry/box-3", 1, false, []byte(`{"t":1}`)))
	if got := sim.Broker().ClientMetrics("box-3").MessagesSent; got != 4 {
		t.Fatalf("broker counted %d messages sent, want 4", got)
	}
	svc.EvaluateCloud(time.Now())
	if diff := cmp.Diff([]string{"quiet"}, active()); diff != "" {
		t.Errorf("cloud-side (-want +got):\n%s", diff)
	}
	var types []string
	for _, e := range svc.ListViolationEvents(time.Now().Add(-time.Hour), time.Now().Add(time.Hour), defender.Filter{ThingName: "box-3"}) {
		types = append(types, e.Behavior.Name+" "+e.ViolationEventType)
	}
	if diff := cmp.Diff([]string{"few-ports in-alarm", "few-ports alarm-cleared", "quiet in-alarm"}, types); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestAudit(t *testing.T) {
	sim := cloudtest.Start(t, "")
	reg := sim.Registry()
	if _, _, err := sim.CreateThing("solo"); err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := sim.CreateThing("twin-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateThing("twin-b", "", nil); err != nil {
		t.Fatal(err)
	}
	blk, _ := x509PEM(certPEM)
	if err := reg.AttachThingPrincipal("twin-b", blk); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreatePolicy("open", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Connect","iot:Publish"],"Resource":"*"},{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/*"}]}`); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreatePolicy("tight", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/telemetry/*"}}`); err != nil {
		t.Fatal(err)
	}
	summary := func(fs []defender.Finding) []string {
		var out []string
		for _, f := range fs {
			if f.ResourceType == "IOT_POLICY" {
				out = append(out, f.CheckName+" "+f.ResourceID+" "+f.Reason)
			} else {
				out = append(out, f.CheckName+" "+strings.Join(f.Things, ","))
			}
		}
		return out
	}
	fs, err := sim.Defender().Audit(time.Now(), 30)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"DEVICE_CERTIFICATE_SHARED_CHECK twin-a,twin-b",
		"IOT_POLICY_OVERLY_PERMISSIVE_CHECK open Policy allows iot:Publish and iot:Subscribe on all topics",
	}
	if diff := cmp.Diff(want, summary(fs)); diff != "" {
		t.Errorf("audit now (-want +got):\n%s", diff)
	}
	// Ten days before the device certificates expire, all of them (and the
	// claim certificate) are reported.
	c, err := reg.DescribeCertificate(blk)
	if err != nil {
		t.Fatal(err)
	}
	fs, err = sim.Defender().Audit(c.NotAfter.AddDate(0, 0, -10), 30)
	if err != nil {
		t.Fatal(err)
	}
	expiring := 0
	for _, f := range fs {
		if f.CheckName == defender.CheckCertificateExpiring {
			expiring++
		}
	}
	if expiring < 2 {
		t.Errorf("%d expiring certificates reported, want at least the 2 device certificates: %v", expiring, summary(fs))
	}
}

// x509PEM returns the certificate id of a PEM certificate.
func x509PEM(certPEM []byte) (string, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return "", fmt.Errorf("not PEM")
	}
	return pki.CertificateID(blk.Bytes), nil
}
