package jobs_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/jobs"
)

const (
	waitFor    = 10 * time.Second
	awsCLIPath = "/usr/bin/aws"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// device is a paho client connected as a thing, subscribed to filter.
type device struct {
	paho.Client
	msgs chan paho.Message
}

func connect(t *testing.T, sim *cloud.Sim, thing, filter string, policy string) *device {
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
	if tok := d.Subscribe(filter, 1, nil); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return d
}

// await reads messages until one arrives on topic and returns its payload
// and the messages before it.
func (d *device) await(t *testing.T, topic string) (map[string]any, []string) {
	t.Helper()
	var skipped []string
	deadline := time.After(waitFor)
	for {
		select {
		case m := <-d.msgs:
			if m.Topic() != topic {
				skipped = append(skipped, m.Topic())
				continue
			}
			var v map[string]any
			if err := json.Unmarshal(m.Payload(), &v); err != nil {
				t.Fatalf("%s: %v", topic, err)
			}
			return v, skipped
		case <-deadline:
			t.Fatalf("no message on %s (saw %v)", topic, skipped)
			return nil, nil
		}
	}
}

func (d *device) publish(t *testing.T, topic, payload string) {
	t.Helper()
	if tok := d.Publish(topic, 1, false, payload); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

type cli struct {
	t    *testing.T
	home string
	ep   cloud.Endpoint // its credentials sign the CLI's requests
}

func newCLI(t *testing.T) *cli {
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
	return &cli{t: t, home: t.TempDir()}
}

// run runs the CLI; v, if not nil, gets its JSON output.
func (c *cli) run(v any, args ...string) {
	c.t.Helper()
	cmd := exec.Command(awsCLIPath, args...)
	cmd.Dir = c.home
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + c.home, "AWS_ACCESS_KEY_ID=" + c.ep.AWSAccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.ep.AWSSecretAccessKey,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1", "AWS_EC2_METADATA_DISABLED=true"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	if v != nil {
		if err := json.Unmarshal(out.Bytes(), v); err != nil {
			c.t.Fatalf("aws %s: output %q: %v", strings.Join(args, " "), out.String(), err)
		}
	}
}

func get(t *testing.T, url, rng string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

const allowAll = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`

// TestOTAEndToEnd drives iotsim with the real aws CLI and real MQTT
// clients: upload an artifact with aws s3 cp, create jobs (a document with
// a presigned placeholder; a documentSource for a thing group), fetch the
// document over MQTT, download through the presigned URL (ranged), let it
// expire, and read and cancel through the control plane. A monitor
// client that may subscribe to everything sees the notifications but
// none of the device's answers.
func TestOTAEndToEnd(t *testing.T) {
	aws := newCLI(t)
	clk := &clock{t: time.Now()}
	sim := cloudtest.StartWith(t, cloud.Options{Now: clk.Now})
	aws.ep = sim.Endpoint()
	ep := sim.Endpoint().HTTPEndpoint
	box := connect(t, sim, "box-1", "$aws/things/box-1/jobs/#", "")
	monitor := connect(t, sim, "monitor", "$aws/things/box-1/jobs/#", allowAll)
	if err := sim.Registry().AddThingToThingGroup("fleet", "box-1"); err != nil {
		if _, err := sim.Registry().CreateThingGroup("fleet", nil); err != nil {
			t.Fatal(err)
		}
		if err := sim.Registry().AddThingToThingGroup("fleet", "box-1"); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	artifact := bytes.Repeat([]byte("firmware-1.2.3 "), 1000)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aws.run(nil, "s3", "cp", write("agent.bin", artifact), "s3://ota-files/agent-1.2.3.bin", "--endpoint-url", ep+"/s3")
	aws.run(nil, "s3", "cp", write("job.json", []byte(`{"operation":"reboot"}`)), "s3://ota-files/jobs/reboot.json", "--endpoint-url", ep+"/s3")
	doc := `{"operation":"install","url":"${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/ota-files/agent-1.2.3.bin}"}`

	var created map[string]any
	aws.run(&created, "--endpoint-url", ep, "iot", "create-job", "--job-id", "ota-1",
		"--targets", "arn:aws:iot:us-east-1:123456789012:thing/box-1",
		"--document", "file://"+write("doc.json", []byte(doc)),
		"--presigned-url-config", `{"roleArn":"arn:aws:iam::123456789012:role/ota","expiresInSec":60}`,
		"--timeout-config", `{"inProgressTimeoutInMinutes":30}`, "--description", "OTA 1.2.3")
	if created["jobArn"] != "arn:aws:iot:us-east-1:123456789012:job/ota-1" {
		t.Errorf("create-job: %v", created)
	}
	next, _ := box.await(t, "$aws/things/box-1/jobs/notify-next")
	pushedURL := next["execution"].(map[string]any)["jobDocument"].(map[string]any)["url"].(string)
	if !strings.HasPrefix(pushedURL, ep+"/s3/ota-files/agent-1.2.3.bin?") {
		t.Errorf("notify-next URL %s", pushedURL)
	}
	aws.run(nil, "--endpoint-url", ep, "iot", "create-job", "--job-id", "reboot-1",
		"--targets", "arn:aws:iot:us-east-1:123456789012:thinggroup/fleet",
		"--document-source", "https://s3.amazonaws.com/ota-files/jobs/reboot.json")
	box.await(t, "$aws/things/box-1/jobs/notify")

	var described struct {
		DocumentSource string `json:"documentSource"`
		Job            struct {
			Status             string         `json:"status"`
			Targets            []string       `json:"targets"`
			PresignedURLConfig map[string]any `json:"presignedUrlConfig"`
			Process            map[string]int `json:"jobProcessDetails"`
			CreatedAt          string         `json:"createdAt"`
		} `json:"job"`
	}
	aws.run(&described, "--endpoint-url", ep, "iot", "describe-job", "--job-id", "reboot-1")
	if described.DocumentSource != "https://s3.amazonaws.com/ota-files/jobs/reboot.json" || described.Job.Status != "IN_PROGRESS" ||
		described.Job.Process["numberOfQueuedThings"] != 1 || described.Job.CreatedAt == "" {
		t.Errorf("describe-job reboot-1: %+v", described)
	}
	var jd struct{ Document string }
	aws.run(&jd, "--endpoint-url", ep, "iot", "get-job-document", "--job-id", "ota-1")
	if jd.Document != doc {
		t.Errorf("get-job-document: %s (placeholders must stay)", jd.Document)
	}
	aws.run(&jd, "--endpoint-url", ep, "iot", "get-job-document", "--job-id", "reboot-1")
	if jd.Document != `{"operation":"reboot"}` {
		t.Errorf("get-job-document from documentSource: %s", jd.Document)
	}

	// The device starts the OTA job and downloads the artifact.
	box.publish(t, "$aws/things/box-1/jobs/start-next", `{"clientToken":"c-1","statusDetails":{"step":"download"}}`)
	started, _ := box.await(t, "$aws/things/box-1/jobs/start-next/accepted")
	ex := started["execution"].(map[string]any)
	url := ex["jobDocument"].(map[string]any)["url"].(string)
	if ex["jobId"] != "ota-1" || started["clientToken"] != "c-1" || !strings.Contains(url, "X-Amz-Expires=60") {
		t.Fatalf("start-next: %v", started)
	}
	if code, body := get(t, url, "bytes=0-9"); code != http.StatusPartialContent || string(body) != "firmware-1" {
		t.Errorf("ranged download: %d %q", code, body)
	}
	if code, body := get(t, url, "bytes=10-"); code != http.StatusPartialContent || !bytes.Equal(body, artifact[10:]) {
		t.Errorf("resumed download: %d, %d bytes", code, len(body))
	}
	clk.Add(61 * time.Second)
	if code, body := get(t, url, ""); code != http.StatusForbidden || !strings.Contains(string(body), "<Code>AccessDenied</Code>") {
		t.Errorf("expired URL: %d %s", code, body)
	}
	// A fresh fetch of the document gives a fresh URL.
	box.publish(t, "$aws/things/box-1/jobs/ota-1/get", `{}`)
	again, _ := box.await(t, "$aws/things/box-1/jobs/ota-1/get/accepted")
	fresh := again["execution"].(map[string]any)["jobDocument"].(map[string]any)["url"].(string)
	if code, body := get(t, fresh, ""); code != http.StatusOK || !bytes.Equal(body, artifact) {
		t.Errorf("fresh URL: %d, %d bytes", code, len(body))
	}

	box.publish(t, "$aws/things/box-1/jobs/ota-1/update", `{"status":"IN_PROGRESS","expectedVersion":"2","statusDetails":{"step":"verify"}}`)
	box.await(t, "$aws/things/box-1/jobs/ota-1/update/accepted")
	var exec struct {
		Execution struct {
			Status        string                       `json:"status"`
			VersionNumber int                          `json:"versionNumber"`
			StatusDetails map[string]map[string]string `json:"statusDetails"`
			ThingARN      string                       `json:"thingArn"`
			StartedAt     string                       `json:"startedAt"`
		} `json:"execution"`
	}
	aws.run(&exec, "--endpoint-url", ep, "iot", "describe-job-execution", "--job-id", "ota-1", "--thing-name", "box-1")
	if exec.Execution.Status != "IN_PROGRESS" || exec.Execution.VersionNumber != 3 ||
		exec.Execution.StatusDetails["detailsMap"]["step"] != "verify" || exec.Execution.StartedAt == "" {
		t.Errorf("describe-job-execution: %+v", exec)
	}
	var forJob struct {
		ExecutionSummaries []struct {
			ThingARN string         `json:"thingArn"`
			Summary  map[string]any `json:"jobExecutionSummary"`
		} `json:"executionSummaries"`
	}
	aws.run(&forJob, "--endpoint-url", ep, "iot", "list-job-executions-for-job", "--job-id", "ota-1")
	if len(forJob.ExecutionSummaries) != 1 || forJob.ExecutionSummaries[0].Summary["status"] != "IN_PROGRESS" {
		t.Errorf("list-job-executions-for-job: %+v", forJob)
	}
	var forThing struct {
		ExecutionSummaries []struct {
			JobID   string         `json:"jobId"`
			Summary map[string]any `json:"jobExecutionSummary"`
		} `json:"executionSummaries"`
	}
	aws.run(&forThing, "--endpoint-url", ep, "iot", "list-job-executions-for-thing", "--thing-name", "box-1")
	if len(forThing.ExecutionSummaries) != 2 || forThing.ExecutionSummaries[0].JobID != "ota-1" || forThing.ExecutionSummaries[1].JobID != "reboot-1" {
		t.Errorf("list-job-executions-for-thing: %+v", forThing)
	}

	// Cancel: the queued job without force, the running one with it.
	aws.run(nil, "--endpoint-url", ep, "iot", "cancel-job", "--job-id", "reboot-1")
	box.await(t, "$aws/things/box-1/jobs/notify")
	aws.run(nil, "--endpoint-url", ep, "iot", "cancel-job", "--job-id", "ota-1", "--force")
	last, _ := box.await(t, "$aws/things/box-1/jobs/notify-next")
	if _, ok := last["execution"]; ok {
		t.Errorf("notify-next after cancelling everything: %v", last)
	}
	aws.run(&exec, "--endpoint-url", ep, "iot", "describe-job-execution", "--job-id", "ota-1", "--thing-name", "box-1")
	if exec.Execution.Status != "CANCELED" {
		t.Errorf("after cancel-job --force: %+v", exec)
	}
	box.publish(t, "$aws/things/box-1/jobs/ota-1/update", `{"status":"SUCCEEDED","clientToken":"late"}`)
	rej, _ := box.await(t, "$aws/things/box-1/jobs/ota-1/update/rejected")
	if rej["code"] != "InvalidStateTransition" || rej["clientToken"] != "late" {
		t.Errorf("update after a forced cancel: %v", rej)
	}

	// The monitor saw the notifications and the device's requests (an
	// ordinary publish), but none of the answers. The device's last request
	// marks the end: any answer published to subscribers came before it.
	box.publish(t, "$aws/things/box-1/jobs/get", `{}`)
	box.await(t, "$aws/things/box-1/jobs/get/accepted")
	_, seen := monitor.await(t, "$aws/things/box-1/jobs/get")
	want := map[string]bool{"$aws/things/box-1/jobs/notify": true, "$aws/things/box-1/jobs/notify-next": true,
		"$aws/things/box-1/jobs/start-next": true, "$aws/things/box-1/jobs/ota-1/update": true}
	for _, topic := range seen {
		if strings.HasSuffix(topic, "/accepted") || strings.HasSuffix(topic, "/rejected") {
			t.Errorf("the monitor received the device's answer %s", topic)
		}
		delete(want, topic)
	}
	if len(want) != 0 {
		t.Errorf("the monitor did not see %v (saw %v)", want, seen)
	}
}

// TestDeviceClientStatusDetails: the AWS IoT Device Client reports a
// command's output in statusDetails, with its newlines, and treats a
// rejection as final. iotsim stores it, and describe-job-execution through
// the real aws CLI shows it, as AWS's does.
func TestDeviceClientStatusDetails(t *testing.T) {
	aws := newCLI(t)
	sim := cloudtest.Start(t, "")
	aws.ep = sim.Endpoint()
	ep := sim.Endpoint().HTTPEndpoint
	dc := connect(t, sim, "dc-1", "$aws/things/dc-1/jobs/#", "")
	if _, err := sim.Jobs().CreateJob(jobs.CreateJobInput{JobID: "hello", Document: `{"version":"1.0","steps":[]}`,
		Targets: []string{"arn:aws:iot:us-east-1:123456789012:thing/dc-1"}}); err != nil {
		t.Fatal(err)
	}
	dc.publish(t, "$aws/things/dc-1/jobs/start-next", `{"clientToken":"Qx3Tz9LmPa"}`)
	dc.await(t, "$aws/things/dc-1/jobs/start-next/accepted")
	// The Device Client's UpdateJobExecutionRequest, as its SDK encodes it.
	dc.publish(t, "$aws/things/dc-1/jobs/hello/update",
		`{"executionNumber":1,"status":"SUCCEEDED","statusDetails":{"reason":"Job executed successfully","stdout":"Hello\nworld\n","stderr":"ls: cannot access 'x': No such file or directory\n"},"clientToken":"Vb7Kd2RsWq"}`)
	ok, _ := dc.await(t, "$aws/things/dc-1/jobs/hello/update/accepted")
	if ok["clientToken"] != "Vb7Kd2RsWq" {
		t.Errorf("update accepted: %v", ok)
	}
	var out struct {
		Execution struct {
			Status        string `json:"status"`
			StatusDetails struct {
				DetailsMap map[string]string `json:"detailsMap"`
			} `json:"statusDetails"`
		} `json:"execution"`
	}
	aws.run(&out, "--endpoint-url", ep, "iot", "describe-job-execution", "--job-id", "hello", "--thing-name", "dc-1")
	want := map[string]string{"reason": "Job executed successfully", "stdout": "Hello\nworld\n",
		"stderr": "ls: cannot access 'x': No such file or directory\n"}
	if out.Execution.Status != "SUCCEEDED" || !maps.Equal(out.Execution.StatusDetails.DetailsMap, want) {
		t.Errorf("describe-job-execution: %+v, want SUCCEEDED with %v", out.Execution, want)
	}
}
