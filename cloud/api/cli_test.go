package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// awsCLIPath is Debian's aws CLI v2 (the pyenv shim on PATH is another one).
const awsCLIPath = "/usr/bin/aws"

// awsCLI runs the real aws CLI against endpoint and returns stdout, stderr
// and the exit code. It skips the test when the CLI is absent, except in CI.
type awsCLI struct {
	t        *testing.T
	endpoint string
	dir      string
	secret   string
}

func newAWSCLI(t *testing.T, endpoint string) *awsCLI {
	t.Helper()
	if testing.Short() {
		t.Skip("aws CLI tests are slow; skipped with -short")
	}
	if _, err := os.Stat(awsCLIPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", awsCLIPath, err)
		}
		t.Skipf("%s not installed (%v); skipping the aws CLI tests", awsCLIPath, err)
	}
	return &awsCLI{t: t, endpoint: endpoint, dir: t.TempDir(), secret: "test"}
}

func (c *awsCLI) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := exec.Command(awsCLIPath, append([]string{"--endpoint-url", c.endpoint}, args...)...)
	cmd.Dir = c.dir
	cmd.Env = []string{
		"PATH=/usr/bin:/bin",
		"HOME=" + c.dir,
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=" + c.secret,
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_REGION=us-east-1",
		"AWS_PAGER=",
		"AWS_MAX_ATTEMPTS=1",
		"AWS_EC2_METADATA_DISABLED=true",
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("run aws %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and decodes its JSON output into v
// (if v is not nil).
func (c *awsCLI) ok(v any, args ...string) {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("aws %s: exit %d\nstderr: %s", strings.Join(args, " "), code, errs)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			c.t.Fatalf("aws %s: output %q: %v", strings.Join(args, " "), out, err)
		}
	}
}

// file reads a file the CLI wrote in its working directory.
func (c *awsCLI) file(name string) map[string]any {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, name))
	if err != nil {
		c.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("%s = %q: %v", name, b, err)
	}
	return m
}

// fails runs a command that must fail with the given AWS error code.
func (c *awsCLI) fails(code string, args ...string) {
	c.t.Helper()
	_, errs, exit := c.run(args...)
	if exit == 0 {
		c.t.Fatalf("aws %s succeeded, want %s", strings.Join(args, " "), code)
	}
	if !strings.Contains(errs, "An error occurred ("+code+")") {
		c.t.Errorf("aws %s: stderr %q, want %q", strings.Join(args, " "), errs, "An error occurred ("+code+")")
	}
}

func TestAWSCLI(t *testing.T) {
	t.Parallel()
	e := newEnvClock(t, time.Now, nil)
	hs := httptest.NewServer(e.srv)
	t.Cleanup(hs.Close)
	cli := newAWSCLI(t, hs.URL)

	t.Run("describe-endpoint", func(t *testing.T) {
		var out map[string]string
		cli.ok(&out, "iot", "describe-endpoint", "--endpoint-type", "iot:Data-ATS")
		if out["endpointAddress"] != "sim-ats.iot.us-east-1.example" {
			t.Errorf("got %v", out)
		}
	})

	var thingID string
	t.Run("create-thing and describe-thing", func(t *testing.T) {
		var out map[string]string
		cli.ok(&out, "iot", "create-thing", "--thing-name", "cli-lamp", "--attribute-payload", `{"attributes":{"room":"hall"}}`)
		if out["thingName"] != "cli-lamp" || out["thingArn"] != "arn:aws:iot:us-east-1:123456789012:thing/cli-lamp" || out["thingId"] == "" {
			t.Errorf("create-thing: %v", out)
		}
		thingID = out["thingId"]
		var d map[string]any
		cli.ok(&d, "iot", "describe-thing", "--thing-name", "cli-lamp")
		want := map[string]any{"defaultClientId": "cli-lamp", "thingName": "cli-lamp", "thingId": thingID,
			"thingArn": out["thingArn"], "attributes": map[string]any{"room": "hall"}, "version": float64(1)}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("describe-thing (-want +got):\n%s", diff)
		}
	})

	t.Run("list-things over several pages", func(t *testing.T) {
		want := []string{"cli-lamp"}
		for _, n := range []string{"cli-a", "cli-b", "cli-c", "cli-d"} {
			if _, err := e.reg.CreateThing(n, "", nil); err != nil {
				t.Fatal(err)
			}
			want = append(want, n)
		}
		slices.Sort(want)
		var out struct {
			Things []struct {
				ThingName string `json:"thingName"`
			} `json:"things"`
		}
		cli.ok(&out, "iot", "list-things", "--page-size", "2")
		var got []string
		for _, th := range out.Things {
			got = append(got, th.ThingName)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("list-things (-want +got):\n%s", d)
		}
	})

	var certID, certARN string
	t.Run("create-keys-and-certificate and attach-thing-principal", func(t *testing.T) {
		var out struct {
			CertificateArn string `json:"certificateArn"`
			CertificateID  string `json:"certificateId"`
			CertificatePem string `json:"certificatePem"`
			KeyPair        struct{ PublicKey, PrivateKey string }
		}
		cli.ok(&out, "iot", "create-keys-and-certificate", "--set-as-active")
		certID, certARN = out.CertificateID, out.CertificateArn
		if !strings.Contains(out.KeyPair.PrivateKey, "PRIVATE KEY") || !strings.Contains(out.KeyPair.PublicKey, "PUBLIC KEY") ||
			!strings.Contains(out.CertificatePem, "CERTIFICATE") || len(certID) != 64 {
			t.Fatalf("create-keys-and-certificate: %+v", out)
		}
		if !strings.HasPrefix(out.KeyPair.PrivateKey, "-----BEGIN RSA PRIVATE KEY-----") {
			t.Errorf("PrivateKey %.40q, want AWS's PKCS#1 RSA key", out.KeyPair.PrivateKey)
		}
		if c, err := e.reg.DescribeCertificate(certID); err != nil || c.Status != "ACTIVE" {
			t.Errorf("registry has %+v, %v; want ACTIVE", c, err)
		}
		cli.ok(nil, "iot", "attach-thing-principal", "--thing-name", "cli-lamp", "--principal", certARN)
		if ps, _ := e.reg.ThingPrincipals("cli-lamp"); !cmp.Equal(ps, []string{certID}) {
			t.Errorf("principals %v, want [%s]", ps, certID)
		}
		var lp map[string][]string
		cli.ok(&lp, "iot", "list-thing-principals", "--thing-name", "cli-lamp")
		if d := cmp.Diff(map[string][]string{"principals": {certARN}}, lp); d != "" {
			t.Errorf("list-thing-principals (-want +got):\n%s", d)
		}
	})

	t.Run("describe, update and list certificates", func(t *testing.T) {
		var d struct {
			CertificateDescription map[string]any `json:"certificateDescription"`
		}
		cli.ok(&d, "iot", "describe-certificate", "--certificate-id", certID)
		cd := d.CertificateDescription
		if cd["status"] != "ACTIVE" || cd["certificateArn"] != certARN {
			t.Errorf("describe-certificate: %v", cd)
		}
		// The CLI turns epoch numbers into ISO-8601 text: proof it parsed them.
		if s, _ := cd["creationDate"].(string); !strings.HasPrefix(s, time.Now().UTC().Format("2006-")) {
			t.Errorf("creationDate %v is not a parsed timestamp", cd["creationDate"])
		}
		cli.ok(nil, "iot", "update-certificate", "--certificate-id", certID, "--new-status", "INACTIVE")
		cli.ok(nil, "iot", "create-keys-and-certificate")
		type list struct {
			Certificates []map[string]any `json:"certificates"`
			NextMarker   string           `json:"nextMarker"`
		}
		var all list
		cli.ok(&all, "iot", "list-certificates")
		if len(all.Certificates) != 2 || all.NextMarker != "" {
			t.Fatalf("list-certificates: %+v, want 2 certificates and no marker", all)
		}
		// --page-size is the operation's own pageSize here, which turns the
		// CLI's auto-pagination off: follow the marker by hand.
		var p1, p2 list
		cli.ok(&p1, "iot", "list-certificates", "--page-size", "1")
		if len(p1.Certificates) != 1 || p1.NextMarker == "" {
			t.Fatalf("first page: %+v, want 1 certificate and a marker", p1)
		}
		cli.ok(&p2, "iot", "list-certificates", "--page-size", "1", "--marker", p1.NextMarker)
		if len(p2.Certificates) != 1 || p2.NextMarker != "" {
			t.Fatalf("second page: %+v, want 1 certificate and no marker", p2)
		}
		var got []string
		for _, c := range append(p1.Certificates, p2.Certificates...) {
			got = append(got, c["certificateId"].(string))
		}
		var want []string
		for _, c := range all.Certificates {
			want = append(want, c["certificateId"].(string))
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("paged by hand (-all +pages):\n%s", d)
		}
		if all.Certificates[1]["certificateId"] != certID || all.Certificates[1]["status"] != "INACTIVE" {
			t.Errorf("oldest certificate %v, want %s INACTIVE last", all.Certificates[1], certID)
		}
	})

	t.Run("shadows", func(t *testing.T) {
		cli.ok(nil, "iot-data", "update-thing-shadow", "--thing-name", "cli-lamp", "--cli-binary-format", "raw-in-base64-out",
			"--payload", `{"state":{"desired":{"on":true}}}`, "upd.json")
		if v := cli.file("upd.json")["version"]; v != float64(1) {
			t.Errorf("update version %v, want 1", v)
		}
		cli.ok(nil, "iot-data", "get-thing-shadow", "--thing-name", "cli-lamp", "get.json")
		got := cli.file("get.json")
		if d := cmp.Diff(map[string]any{"desired": map[string]any{"on": true}, "delta": map[string]any{"on": true}}, got["state"]); d != "" {
			t.Errorf("get-thing-shadow state (-want +got):\n%s", d)
		}

		cli.ok(nil, "iot-data", "update-thing-shadow", "--thing-name", "cli-lamp", "--shadow-name", "cfg",
			"--cli-binary-format", "raw-in-base64-out", "--payload", `{"state":{"reported":{"mode":"eco"}}}`, "named.json")
		cli.ok(nil, "iot-data", "get-thing-shadow", "--thing-name", "cli-lamp", "--shadow-name", "cfg", "named-get.json")
		if d := cmp.Diff(map[string]any{"reported": map[string]any{"mode": "eco"}}, cli.file("named-get.json")["state"]); d != "" {
			t.Errorf("named shadow state (-want +got):\n%s", d)
		}
		var ln struct {
			Results   []string `json:"results"`
			Timestamp float64  `json:"timestamp"`
		}
		cli.ok(&ln, "iot-data", "list-named-shadows-for-thing", "--thing-name", "cli-lamp")
		if !cmp.Equal(ln.Results, []string{"cfg"}) || ln.Timestamp == 0 {
			t.Errorf("list-named-shadows-for-thing: %+v", ln)
		}

		cli.ok(nil, "iot-data", "delete-thing-shadow", "--thing-name", "cli-lamp", "del.json")
		if v := cli.file("del.json")["version"]; v != float64(1) {
			t.Errorf("delete version %v, want 1", v)
		}
		cli.fails("ResourceNotFoundException", "iot-data", "get-thing-shadow", "--thing-name", "cli-lamp", "gone.json")
		cli.fails("ConflictException", "iot-data", "update-thing-shadow", "--thing-name", "cli-lamp", "--shadow-name", "cfg",
			"--cli-binary-format", "raw-in-base64-out", "--payload", `{"state":{"reported":{"mode":"x"}},"version":9}`, "c.json")
	})

	t.Run("publish", func(t *testing.T) {
		before := len(e.published())
		cli.ok(nil, "iot-data", "publish", "--topic", "dev/cli lamp/state", "--qos", "1",
			"--cli-binary-format", "raw-in-base64-out", "--payload", `{"on":true}`)
		p := e.published()
		if d := cmp.Diff([]published{{Topic: "dev/cli lamp/state", Payload: `{"on":true}`, QoS: 1}}, p[before:]); d != "" {
			t.Errorf("published (-want +got):\n%s", d)
		}
		cli.fails("InvalidRequestException", "iot-data", "publish", "--topic", "dev/+/state",
			"--cli-binary-format", "raw-in-base64-out", "--payload", `x`)
	})

	t.Run("error", func(t *testing.T) {
		_, errs, code := cli.run("iot", "describe-thing", "--thing-name", "ghost")
		if code == 0 {
			t.Fatal("describe-thing of a missing thing succeeded")
		}
		// aws-cli 2.9.19 adds "(reached max retries: 0)" after the operation name.
		for _, want := range []string{"An error occurred (ResourceNotFoundException) when calling the DescribeThing operation",
			": Thing ghost cannot be found."} {
			if !strings.Contains(errs, want) {
				t.Errorf("stderr %q, want %q", errs, want)
			}
		}
	})
}

// TestAWSCLIStrict checks that signatures made by the real CLI verify.
func TestAWSCLIStrict(t *testing.T) {
	t.Parallel()
	e := newEnvClock(t, time.Now, func(o *Options) {
		o.Credentials, o.NoAuth = &Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, false
	})
	hs := httptest.NewServer(e.srv)
	t.Cleanup(hs.Close)
	cli := newAWSCLI(t, hs.URL)

	cli.ok(nil, "iot", "create-thing", "--thing-name", "signed:lamp", "--attribute-payload", `{"attributes":{"k":"v=w/x"}}`)
	var l map[string]any
	cli.ok(&l, "iot", "list-things", "--attribute-name", "k", "--attribute-value", "v=w/x")
	if th, _ := l["things"].([]any); len(th) != 1 {
		t.Errorf("list-things by attribute: %v", l)
	}
	cli.ok(nil, "iot-data", "update-thing-shadow", "--thing-name", "signed:lamp", "--shadow-name", "$cfg",
		"--cli-binary-format", "raw-in-base64-out", "--payload", `{"state":{"reported":{"x":1}}}`, "o.json")
	cli.ok(nil, "iot-data", "publish", "--topic", "a/b c/%d~", "--retain", "--cli-binary-format", "raw-in-base64-out", "--payload", "p")
	if p := e.published(); len(p) != 1 || p[0].Topic != "a/b c/%d~" || !p[0].Retain {
		t.Errorf("published %+v", p)
	}

	cli.secret = "wrong"
	cli.fails("InvalidSignatureException", "iot", "describe-thing", "--thing-name", "signed:lamp")
}
