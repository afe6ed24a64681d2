package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	cloudjobs "github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
)

// underPolicy makes policy (agent.Policy of cfg) the only one of the
// thing's certificate, and creates the rotation template, which attaches
// that policy (and no other) to a rotated certificate.
func underPolicy(t *testing.T, sim *cloud.Sim, thing string, cfg config.Config, policy agent.PolicyDocument) {
	t.Helper()
	reg := sim.Registry()
	doc, err := json.Marshal(policy)
	if err != nil {
		t.Fatal(err)
	}
	const name = "iotagent-printed"
	if _, err := reg.CreatePolicy(name, string(doc)); err != nil {
		t.Fatalf("create policy: %v", err)
	}
	principals, err := reg.ThingPrincipals(thing)
	if err != nil || len(principals) != 1 {
		t.Fatalf("principals of %s: %v %v", thing, principals, err)
	}
	certARN := principals[0]
	if !strings.HasPrefix(certARN, "arn:") {
		c, err := reg.DescribeCertificate(certARN)
		if err != nil {
			t.Fatal(err)
		}
		certARN = c.ARN
	}
	if err := reg.DetachPolicy(provisioning.DevicePolicyName, certARN); err != nil {
		t.Fatalf("detach %s: %v", provisioning.DevicePolicyName, err)
	}
	if err := reg.AttachPolicy(name, certARN); err != nil {
		t.Fatalf("attach: %v", err)
	}
	body := strings.Replace(provisioning.DefaultTemplateBody(true), `"`+provisioning.DevicePolicyName+`"`, `"`+name+`"`, 1)
	if _, err := reg.CreateProvisioningTemplate(registry.ProvisioningTemplate{
		Name: cfg.RotationTemplate(), Body: body, Enabled: true,
		RoleARN: "arn:aws:iam::" + reg.Account() + ":role/iotsim-provisioning",
		Hook:    &registry.ProvisioningHook{TargetARN: provisioning.TakeoverGuardARN(reg.Region(), reg.Account()), PayloadVersion: provisioning.HookPayloadVersion},
	}); err != nil {
		t.Fatalf("create template: %v", err)
	}
}

// connection polls the agent's connection section of the local API until
// ok accepts it.
func connection(t *testing.T, d *device, what string, ok func(localapi.Connection) bool) localapi.Connection {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var c localapi.Connection
		err := localapi.NewClient(d.cfg.LocalAPI.Socket, 5*time.Second).Get(ctx, localapi.SectionConnection, &c)
		cancel()
		if err == nil && ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v %v", what, c, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func connected(c localapi.Connection) bool { return c.Connected }

// TestPrintedPolicyIsEnough runs the agent under exactly the policy that
// "iotagent policy" prints for its config (agent.Policy): shadow sync, a
// job, a Device Defender report and a certificate rotation, and AWS IoT
// (iotsim) never closes its connection for authorization.
func TestPrintedPolicyIsEnough(t *testing.T) {
	sim := cloudtest.Start(t, "")
	const thing = "box-pol"
	obs := observe(sim, thing)
	d := newDevice(t, sim, thing)
	d.cfg.Defender.Enabled = true
	d.cfg.Rotation.Template = "box-rotation"
	policy, err := agent.Policy(d.cfg, agent.PolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	underPolicy(t, sim, thing, d.cfg, policy)
	d.start(t, agent.Options{DefenderFirstDelay: time.Millisecond})

	waitFor(t, "first telemetry", obs.telemetry, func(map[string]any) bool { return true })
	// Before any delta: a desired state delays the first report by the
	// interval (the reporter's timer restarts on every SetInterval).
	d.waitStatus(t, "an accepted Defender report", func(s agent.Status) bool { return s.Defender != nil && s.Defender.Accepted >= 1 })
	updateDesired(t, sim, thing, `{"alarm":{"armed":true}}`)
	waitFor(t, "armed report", obs.reported, func(r map[string]any) bool { return path(r, "alarm.armed") == true })
	d.motion.Trigger(true)
	waitFor(t, "motion alarm", obs.alarms, func(map[string]any) bool { return true })

	if _, err := sim.Jobs().CreateJob(cloudjobs.CreateJobInput{JobID: "unknown-1", Targets: []string{sim.Jobs().ThingARN(thing)},
		Document: `{"operation":"format-disk"}`}); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if e := waitJob(t, sim, thing, "unknown-1"); e.Status != cloudjobs.StatusRejected {
		t.Errorf("job execution %+v, want REJECTED by the agent", e)
	}

	c := connection(t, d, "the connection", connected)
	if c.Diagnosis != nil || c.Connects != 1 || c.Disconnects != 0 {
		t.Errorf("connection under the printed policy: connects %d, disconnects %d, diagnosis %+v, last error %q",
			c.Connects, c.Disconnects, c.Diagnosis, c.LastError)
	}

	res, err := d.agent.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate under the printed policy: %v", err)
	}
	newCert, err := sim.Registry().DescribeCertificate(res.NewCertificateID)
	if err != nil {
		t.Fatal(err)
	}
	if pols, err := sim.Registry().AttachedPolicies(newCert.ARN); err != nil || len(pols) != 1 || pols[0].Name != "iotagent-printed" {
		t.Fatalf("policies of the rotated certificate: %+v %v", pols, err)
	}
	waitFor(t, "the rotation reported", obs.reported, func(r map[string]any) bool { return path(r, "identity.rotated_from") == res.OldCertificateID })

	// The rotation's check connects with the new certificate and the
	// thing's client id, which takes the running connection over (by
	// design, agent/rotate.DialVerifier): one reconnection, not for
	// authorization.
	c = connection(t, d, "the reconnection after the rotation", func(c localapi.Connection) bool { return c.Connected && c.Connects == 2 })
	if c.Diagnosis != nil || c.Disconnects != 1 {
		t.Errorf("connection after the rotation: connects %d, disconnects %d, diagnosis %+v, last error %q",
			c.Connects, c.Disconnects, c.Diagnosis, c.LastError)
	}

	// After a restart the agent connects with the rotated certificate,
	// under the same policy.
	d.stop()
	d.start(t, agent.Options{DefenderFirstDelay: time.Millisecond})
	d.motion.Trigger(false)
	waitFor(t, "a report after the restart", obs.reported, func(r map[string]any) bool { return path(r, "sensors.motion.active") == false })
	if c := connection(t, d, "the connection after the restart", connected); c.Diagnosis != nil || c.Connects != 1 || c.Disconnects != 0 {
		t.Errorf("connection after the restart: connects %d, disconnects %d, diagnosis %+v", c.Connects, c.Disconnects, c.Diagnosis)
	}
}

// TestPolicyWithoutJobsIsDiagnosed is the README's old hand-written
// policy: no Jobs topics while jobs.enabled is on. The agent's connection
// is closed and the diagnosis names the Jobs topic; this is what
// TestPrintedPolicyIsEnough would see if the policy missed a topic.
func TestPolicyWithoutJobsIsDiagnosed(t *testing.T) {
	sim := cloudtest.Start(t, "")
	const thing = "box-nojobs"
	d := newDevice(t, sim, thing)
	d.cfg.Rotation.Template = "box-rotation"
	noJobs := d.cfg
	noJobs.Jobs.Enabled = false
	policy, err := agent.Policy(noJobs, agent.PolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	underPolicy(t, sim, thing, d.cfg, policy)
	d.start(t, agent.Options{})
	c := connection(t, d, "a diagnosis", func(c localapi.Connection) bool { return c.Diagnosis != nil })
	if !strings.Contains(c.Diagnosis.Topic, "/jobs/") {
		t.Errorf("diagnosis %+v, want a Jobs topic", c.Diagnosis)
	}
}

// TestPolicyFitsAWS: the largest policy (jobs, Defender, rotation, the
// thing variable) fits AWS IoT's 2048 characters.
func TestPolicyFitsAWS(t *testing.T) {
	cfg := config.Default()
	cfg.Defender.Enabled = true
	cfg.Defender.Format = "cbor"
	cfg.Rotation.Template = "chocolate-box-fleet-provisioning"
	p, err := agent.Policy(cfg, agent.PolicyOptions{})
	if err != nil {
		t.Fatalf("the largest policy: %v (%d characters)", err, p.Size())
	}
	t.Logf("%d characters", p.Size())
	cfg.Topics.Alarms = strings.Repeat("a", 1000) + "/{thing}"
	if _, err := agent.Policy(cfg, agent.PolicyOptions{}); !errors.Is(err, agent.ErrPolicyTooLong) {
		t.Errorf("a policy over the limit: %v, want ErrPolicyTooLong", err)
	}
}

func TestPolicyLiteral(t *testing.T) {
	cfg := config.Default()
	if _, err := agent.Policy(cfg, agent.PolicyOptions{Literal: true}); err != agent.ErrPolicyNoThing {
		t.Errorf("literal without thing_name: %v, want ErrPolicyNoThing", err)
	}
	cfg.ThingName = "box-9"
	cfg.Topics.Telemetry = "plant/*/t?{thing}"
	p, err := agent.Policy(cfg, agent.PolicyOptions{Literal: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	for _, want := range []string{`"arn:aws:iot:*:*:client/box-9"`, `"arn:aws:iot:*:*:topic/plant/${*}/t${?}box-9"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("policy lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "Connection.Thing") || strings.Contains(string(b), "defender") || strings.Contains(string(b), "provisioning-templates") {
		t.Errorf("literal policy without defender and rotation names more than it needs:\n%s", b)
	}
}
