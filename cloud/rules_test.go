package cloud_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/rules"
)

const (
	awsCLIPath = "/usr/bin/aws"
	waitFor    = 10 * time.Second
	allowAll   = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`
)

// cli runs the real aws CLI signed with a sim's credentials.
type cli struct {
	t    *testing.T
	home string
	ep   cloud.Endpoint
}

func newCLI(t *testing.T, ep cloud.Endpoint) *cli {
	t.Helper()
	if testing.Short() {
		t.Skip("aws CLI tests are slow; skipped with -short")
	}
	if _, err := os.Stat(awsCLIPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", awsCLIPath, err)
		}
		t.Skipf("%s not installed (%v); skipping", awsCLIPath, err)
	}
	return &cli{t: t, home: t.TempDir(), ep: ep}
}

func (c *cli) exec(args ...string) (string, string, error) {
	cmd := exec.Command(awsCLIPath, append([]string{"--endpoint-url", c.ep.HTTPEndpoint}, args...)...)
	cmd.Dir = c.home
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + c.home, "AWS_ACCESS_KEY_ID=" + c.ep.AWSAccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + c.ep.AWSSecretAccessKey, "AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=",
		"AWS_MAX_ATTEMPTS=1", "AWS_EC2_METADATA_DISABLED=true"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// ok runs a command that must succeed; v, if not nil, gets its JSON output.
func (c *cli) ok(v any, args ...string) {
	c.t.Helper()
	out, errs, err := c.exec(args...)
	if err != nil {
		c.t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, errs)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			c.t.Fatalf("aws %s: output %q: %v", strings.Join(args, " "), out, err)
		}
	}
}

// fails runs a command that must fail with code; it returns stderr.
func (c *cli) fails(code string, args ...string) string {
	c.t.Helper()
	_, errs, err := c.exec(args...)
	if err == nil {
		c.t.Fatalf("aws %s succeeded, want %s", strings.Join(args, " "), code)
	}
	if !strings.Contains(errs, "An error occurred ("+code+")") {
		c.t.Errorf("aws %s: stderr %q, want %s", strings.Join(args, " "), errs, code)
	}
	return errs
}

// client is a real MQTT client of a thing; policy "" keeps the default
// device policy.
type client struct {
	paho.Client
	msgs chan paho.Message
}

func connect(t testing.TB, sim *cloud.Sim, thing, policy string, filters ...string) *client {
	t.Helper()
	certPEM, keyPEM, err := sim.CreateThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	if policy != "" {
		reg := sim.Registry()
		if _, err := reg.CreatePolicy(thing+"-policy", policy); err != nil {
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
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sim.CA().CertPEM)
	c := &client{msgs: make(chan paho.Message, 256)}
	o := paho.NewClientOptions().AddBroker("ssl://" + sim.MQTTAddrs()[0]).SetClientID(thing).
		SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}).
		SetAutoReconnect(false).SetConnectTimeout(waitFor).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.msgs <- m })
	c.Client = paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", thing, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	for _, f := range filters {
		if tok := c.Subscribe(f, 1, nil); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	return c
}

func (c *client) publish(t testing.TB, topic, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// next returns the next message, failing after waitFor.
func (c *client) next(t testing.TB) paho.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitFor):
		t.Fatal("no message")
		return nil
	}
}

// webhook is a local HTTP endpoint standing in for a function.
func webhook(t *testing.T) (string, chan string) {
	got := make(chan string, 16)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + r.URL.Path + " " + r.Header.Get("X-Box") + " " + string(b)
	}))
	t.Cleanup(hs.Close)
	return hs.URL, got
}

func metrics(t *testing.T, sim *cloud.Sim) rules.EngineMetrics {
	t.Helper()
	var m rules.EngineMetrics
	if err := sim.Client().Call(context.Background(), "iot", http.MethodGet, "/iotsim/rules/metrics", nil, nil, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTopicRulesWithAWSCLI drives the rule operations with the real aws
// CLI, runs the chocolate box's rule on real MQTT traffic, and finds the
// rules again after a restart.
func TestTopicRulesWithAWSCLI(t *testing.T) {
	dir := t.TempDir()
	sim := cloudtest.Start(t, dir)
	aws := newCLI(t, sim.Endpoint())
	url, posts := webhook(t)
	monitor := connect(t, sim, "monitor", allowAll, "notifications/#", "errors/#")

	rule := `{"sql":"SELECT *, topic(2) AS thing, timestamp() AS received FROM 'alarms/+' WHERE event <> 'test'",
	  "description":"chocolate box alarms","awsIotSqlVersion":"2016-03-23","ruleDisabled":false,
	  "actions":[{"republish":{"roleArn":"arn:aws:iam::123456789012:role/iot-republish","topic":"notifications/${topic(2)}","qos":1}},
	             {"http":{"url":"` + url + `/alarm","headers":[{"key":"X-Box","value":"${topic(2)}"}]}}],
	  "errorAction":{"republish":{"roleArn":"arn:aws:iam::123456789012:role/iot-republish","topic":"errors/rules"}}}`
	aws.ok(nil, "iot", "create-topic-rule", "--rule-name", "box_alarms", "--topic-rule-payload", rule)
	aws.fails("ResourceAlreadyExistsException", "iot", "create-topic-rule", "--rule-name", "box_alarms", "--topic-rule-payload", rule)
	errs := aws.fails("SqlParseException", "iot", "create-topic-rule", "--rule-name", "bad_sql",
		"--topic-rule-payload", `{"sql":"SELECT * FROM 'a' WHERE (x = 1","actions":[]}`)
	if !strings.Contains(errs, "expected ')'") {
		t.Errorf("SqlParseException does not say what is wrong: %s", errs)
	}
	aws.fails("InvalidRequestException", "iot", "create-topic-rule", "--rule-name", "remote",
		"--topic-rule-payload", `{"sql":"SELECT * FROM 'a'","actions":[{"http":{"url":"https://example.com/x"}}]}`)
	aws.fails("InvalidRequestException", "iot", "create-topic-rule", "--rule-name", "bad-name",
		"--topic-rule-payload", `{"sql":"SELECT * FROM 'a'","actions":[]}`)

	var got struct {
		RuleArn string
		Rule    struct {
			RuleName, Sql, Description, AwsIotSqlVersion, CreatedAt string
			RuleDisabled                                            bool
			Actions                                                 []map[string]map[string]any
			ErrorAction                                             map[string]map[string]any
		}
	}
	aws.ok(&got, "iot", "get-topic-rule", "--rule-name", "box_alarms")
	if got.RuleArn != "arn:aws:iot:us-east-1:123456789012:rule/box_alarms" || got.Rule.RuleName != "box_alarms" ||
		!strings.HasPrefix(got.Rule.Sql, "SELECT *, topic(2)") || got.Rule.AwsIotSqlVersion != "2016-03-23" ||
		got.Rule.CreatedAt == "" || len(got.Rule.Actions) != 2 || got.Rule.Actions[1]["http"]["url"] != url+"/alarm" ||
		got.Rule.ErrorAction["republish"]["topic"] != "errors/rules" {
		t.Errorf("get-topic-rule: %+v", got)
	}
	aws.fails("UnauthorizedException", "iot", "get-topic-rule", "--rule-name", "nosuch")

	// The box publishes under the default device policy, unchanged.
	box := connect(t, sim, "box-1", "")
	box.publish(t, "alarms/box-1", `{"thing":"box-1","sensor":"motion","event":"motion"}`)
	m := monitor.next(t)
	var note map[string]any
	if err := json.Unmarshal(m.Payload(), &note); err != nil {
		t.Fatal(err)
	}
	if m.Topic() != "notifications/box-1" || note["thing"] != "box-1" || note["event"] != "motion" || note["received"] == nil {
		t.Errorf("notification %s %s", m.Topic(), m.Payload())
	}
	select {
	case p := <-posts:
		if !strings.HasPrefix(p, `POST /alarm box-1 {"event":"motion","sensor":"motion","thing":"box-1","received":`) {
			t.Errorf("webhook got %q", p)
		}
	case <-time.After(waitFor):
		t.Fatal("the webhook got nothing")
	}

	// Disabled, the rule does nothing; the WHERE clause filters test events.
	aws.ok(nil, "iot", "disable-topic-rule", "--rule-name", "box_alarms")
	box.publish(t, "alarms/box-1", `{"event":"motion"}`)
	aws.ok(nil, "iot", "enable-topic-rule", "--rule-name", "box_alarms")
	box.publish(t, "alarms/box-1", `{"event":"test"}`)
	box.publish(t, "alarms/box-1", `{"event":"lid_open"}`)
	if m := monitor.next(t); !strings.Contains(string(m.Payload()), "lid_open") {
		t.Errorf("after enable: %s %s, want the lid_open notification only", m.Topic(), m.Payload())
	}
	<-posts

	// A failing action: the webhook refuses; the errorAction says so.
	aws.ok(nil, "iot", "replace-topic-rule", "--rule-name", "box_alarms", "--topic-rule-payload",
		strings.Replace(rule, url+"/alarm", url+"/gone", 1))
	hook404 := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(hook404.Close)
	aws.ok(nil, "iot", "replace-topic-rule", "--rule-name", "box_alarms", "--topic-rule-payload",
		strings.Replace(rule, url+"/alarm", hook404.URL+"/alarm", 1))
	box.publish(t, "alarms/box-1", `{"event":"motion"}`)
	seen := map[string]string{}
	for range 2 {
		m := monitor.next(t)
		seen[m.Topic()] = string(m.Payload())
	}
	if !strings.Contains(seen["errors/rules"], `"failedAction":"HttpAction"`) || !strings.Contains(seen["errors/rules"], "404") ||
		seen["notifications/box-1"] == "" {
		t.Errorf("after the webhook failed: %v", seen)
	}
	// The errorAction's message can arrive before the engine has counted
	// it (the counter follows the publish): wait for the count.
	var em rules.EngineMetrics
	for deadline := time.Now().Add(waitFor); ; time.Sleep(10 * time.Millisecond) {
		em = metrics(t, sim)
		if em.Rules["box_alarms"].ErrorActionsRun >= 1 || time.Now().After(deadline) {
			break
		}
	}
	if r := em.Rules["box_alarms"]; r.ActionsFailed != 1 || r.ErrorActionsRun != 1 || r.Matched != 1 || !strings.Contains(r.LastFailure, "404") {
		t.Errorf("counters after replace: %+v", r)
	}
	if em.Dropped != 0 {
		t.Errorf("dropped %d", em.Dropped)
	}

	var list struct {
		Rules []struct {
			RuleName, TopicPattern, RuleArn string
			RuleDisabled                    bool
		}
	}
	aws.ok(nil, "iot", "create-topic-rule", "--rule-name", "archive", "--topic-rule-payload",
		`{"sql":"SELECT * FROM 'telemetry/#'","ruleDisabled":true,"actions":[{"s3":{"roleArn":"r","bucketName":"archive","key":"${topic(2)}/${newuuid()}.json"}}]}`)
	aws.ok(&list, "iot", "list-topic-rules")
	if len(list.Rules) != 2 || list.Rules[0].RuleName != "archive" || !list.Rules[0].RuleDisabled ||
		list.Rules[1].TopicPattern != "alarms/+" || list.Rules[1].RuleDisabled {
		t.Errorf("list-topic-rules: %+v", list)
	}
	aws.ok(&list, "iot", "list-topic-rules", "--topic", "alarms/+")
	if len(list.Rules) != 1 || list.Rules[0].RuleName != "box_alarms" {
		t.Errorf("list-topic-rules --topic: %+v", list)
	}

	// Restart: the rules are still there, and still run.
	sim.Close()
	sim = cloudtest.Start(t, dir)
	aws.ep = sim.Endpoint()
	aws.ok(&list, "iot", "list-topic-rules")
	if len(list.Rules) != 2 {
		t.Fatalf("after restart: %+v", list)
	}
	aws.ok(nil, "iot", "delete-topic-rule", "--rule-name", "box_alarms")
	aws.fails("UnauthorizedException", "iot", "delete-topic-rule", "--rule-name", "box_alarms")
	aws.ok(nil, "iot", "enable-topic-rule", "--rule-name", "archive")
	if err := sim.Objects().CreateBucket("archive"); err != nil {
		t.Fatal(err)
	}
	aws.ok(nil, "iot-data", "publish", "--topic", "telemetry/box-9", "--cli-binary-format", "raw-in-base64-out", "--payload", `{"t":20}`)
	deadline := time.Now().Add(waitFor)
	for metrics(t, sim).Rules["archive"].ActionsSucceeded != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the s3 action did not run: %+v", metrics(t, sim).Rules["archive"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	var objs struct{ Contents []struct{ Key string } }
	aws.ok(&objs, "s3api", "list-objects-v2", "--bucket", "archive")
	if len(objs.Contents) != 1 || !strings.HasPrefix(objs.Contents[0].Key, "box-9/") {
		t.Errorf("objects %+v", objs)
	}
}

// TestBasicIngest: a message to $aws/rules/<rule>/... reaches the rule and
// no subscriber, not even one to $aws/rules/#.
func TestBasicIngest(t *testing.T) {
	sim := cloudtest.Start(t, "")
	if _, err := sim.Rules().Create("ingest", rules.Payload{SQL: "SELECT *, topic() AS t FROM 'sensors/#'",
		Actions: rules.Actions{{Republish: &rules.Republish{Topic: "out/${topic(2)}"}}}}); err != nil {
		t.Fatal(err)
	}
	watcher := connect(t, sim, "watcher", allowAll, "$aws/rules/#", "out/#", "sensors/#", "proof/#")
	dev := connect(t, sim, "dev", allowAll)
	dev.publish(t, "$aws/rules/ingest/sensors/s1", `{"v":1}`)
	m := watcher.next(t)
	if m.Topic() != "out/s1" || string(m.Payload()) != `{"v":1,"t":"sensors/s1"}` {
		t.Errorf("first message %s %s, want the rule's republish only", m.Topic(), m.Payload())
	}
	// The next message proves nothing else was queued before it (on a
	// topic no rule reads: a republish of it would race with it).
	dev.publish(t, "proof/1", `{}`)
	if m := watcher.next(t); m.Topic() != "proof/1" {
		t.Errorf("got %s %s: the Basic Ingest message reached a subscriber", m.Topic(), m.Payload())
	}
}

// TestRulesSeeShadowTopics: a rule on the shadow's documents topic runs
// when the shadow service publishes there, as on AWS.
func TestRulesSeeShadowTopics(t *testing.T) {
	sim := cloudtest.Start(t, "")
	if _, err := sim.Rules().Create("shadow_docs", rules.Payload{
		SQL:     "SELECT current.state.desired.alarm.armed AS armed FROM '$aws/things/+/shadow/update/documents'",
		Actions: rules.Actions{{Republish: &rules.Republish{Topic: "armed/${topic(3)}"}}},
	}); err != nil {
		t.Fatal(err)
	}
	watcher := connect(t, sim, "watcher", allowAll, "armed/#")
	if _, _, err := sim.CreateThing("box-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Shadows().Update("box-3", "", []byte(`{"state":{"desired":{"alarm":{"armed":true}}}}`)); err != nil {
		t.Fatal(err)
	}
	if m := watcher.next(t); m.Topic() != "armed/box-3" || string(m.Payload()) != `{"armed":true}` {
		t.Errorf("got %s %s", m.Topic(), m.Payload())
	}
}
