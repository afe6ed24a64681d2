package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/pki"
)

const testPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"}]}`

func jsonBody(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIdentityErrors(t *testing.T) {
	e := newEnv(t, nil)
	_, certARN := e.mustCreateCert(t, true)
	ok := func(method, target string, body any) resp {
		t.Helper()
		var b []byte
		if body != nil {
			b = jsonBody(t, body)
		}
		r := e.do(t, method, target, b)
		if r.Status != 200 {
			t.Fatalf("%s %s: %d %s", method, target, r.Status, r.Body)
		}
		return r
	}
	ok("POST", "/policies/p1", map[string]string{"policyDocument": testPolicy})
	ok("POST", "/thing-groups/g1", nil)
	ok("POST", "/things/t1", nil)
	ok("PUT", "/thing-groups/addThingToThingGroup", map[string]string{
		"thingGroupArn": "arn:aws:iot:us-east-1:123456789012:thinggroup/g1", "thingArn": "arn:aws:iot:us-east-1:123456789012:thing/t1"})
	if groups, err := e.reg.ThingGroupsOf("t1"); err != nil || !cmp.Equal(groups, []string{"g1"}) {
		t.Errorf("added by ARN: %v, %v", groups, err)
	}

	tooLong := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"arn:` + strings.Repeat("x", 2100) + `"}}`
	for _, tc := range []struct {
		name, method, target string
		body                 any
		status               int
		code                 string
	}{
		{"duplicate policy", "POST", "/policies/p1", map[string]string{"policyDocument": testPolicy}, 409, "ResourceAlreadyExistsException"},
		{"malformed policy", "POST", "/policies/p2", map[string]string{"policyDocument": `{"Statement":{}}`}, 400, "MalformedPolicyException"},
		{"policy too long", "POST", "/policies/p2", map[string]string{"policyDocument": tooLong}, 400, "MalformedPolicyException"},
		{"no document", "POST", "/policies/p2", map[string]string{}, 400, "InvalidRequestException"},
		{"bad policy name", "POST", "/policies/a%20b", map[string]string{"policyDocument": testPolicy}, 400, "InvalidRequestException"},
		{"get missing policy", "GET", "/policies/nope", nil, 404, "ResourceNotFoundException"},
		{"attach missing policy", "PUT", "/target-policies/nope", map[string]string{"target": certARN}, 404, "ResourceNotFoundException"},
		{"attach to missing cert", "PUT", "/target-policies/p1", map[string]string{"target": "arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("a", 64)}, 404, "ResourceNotFoundException"},
		{"attach to a thing", "PUT", "/target-policies/p1", map[string]string{"target": "arn:aws:iot:us-east-1:123456789012:thing/t1"}, 400, "InvalidRequestException"},
		{"attach without target", "PUT", "/target-policies/p1", map[string]string{}, 400, "InvalidRequestException"},
		{"list attached of unknown", "POST", "/attached-policies/" + url.PathEscape("arn:aws:iot:us-east-1:123456789012:thinggroup/none"), nil, 404, "ResourceNotFoundException"},
		{"group with other attributes", "POST", "/thing-groups/g1", map[string]any{"thingGroupProperties": map[string]any{"attributePayload": map[string]any{"attributes": map[string]string{"a": "b"}}}}, 409, "ResourceAlreadyExistsException"},
		{"bad group attribute", "POST", "/thing-groups/g2", map[string]any{"thingGroupProperties": map[string]any{"attributePayload": map[string]any{"attributes": map[string]string{"a b": "c"}}}}, 400, "InvalidRequestException"},
		{"add to missing group", "PUT", "/thing-groups/addThingToThingGroup", map[string]string{"thingGroupName": "none", "thingName": "t1"}, 404, "ResourceNotFoundException"},
		{"add missing thing", "PUT", "/thing-groups/addThingToThingGroup", map[string]string{"thingGroupName": "g1", "thingName": "none"}, 404, "ResourceNotFoundException"},
		{"add without thing", "PUT", "/thing-groups/addThingToThingGroup", map[string]string{"thingGroupName": "g1"}, 400, "InvalidRequestException"},
		{"CA without verification", "POST", "/cacertificate", map[string]string{"caCertificate": string(e.ca.CertPEM)}, 400, "InvalidRequestException"},
		{"CA junk", "POST", "/cacertificate", map[string]string{"caCertificate": "junk", "certificateMode": "SNI_ONLY"}, 400, "CertificateValidationException"},
		{"register junk", "POST", "/certificate/register", map[string]string{"certificatePem": "junk"}, 400, "CertificateValidationException"},
		{"register without CA", "POST", "/certificate/register", map[string]string{"certificatePem": string(e.ca.CertPEM)}, 400, "CertificateValidationException"},
		{"register bad status", "POST", "/certificate/register", map[string]string{"certificatePem": string(e.ca.CertPEM), "status": "GREAT"}, 400, "InvalidRequestException"},
		{"describe missing CA", "GET", "/cacertificate/" + strings.Repeat("b", 64), nil, 404, "ResourceNotFoundException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			if tc.body != nil {
				b = jsonBody(t, tc.body)
			}
			e.wantError(t, e.do(t, tc.method, tc.target, b), tc.status, tc.code)
		})
	}

	// At most 10 policies per target: LimitExceededException (410).
	for i := range 10 {
		name := "lim" + string(rune('a'+i))
		ok("POST", "/policies/"+name, map[string]string{"policyDocument": testPolicy})
		ok("PUT", "/target-policies/"+name, map[string]string{"target": certARN})
	}
	e.wantError(t, e.do(t, "PUT", "/target-policies/p1", jsonBody(t, map[string]string{"target": certARN})), http.StatusGone, "LimitExceededException")

	// A registry without the identity methods answers 500, not a panic.
	b := newEnv(t, func(o *Options) { o.Registry = brokenRegistry{o.Registry} })
	b.wantError(t, b.do(t, "GET", "/policies/p1", nil), 500, "InternalFailureException")
}

// TestIdentityAWSCLI drives the identity operations with the real aws CLI.
func TestIdentityAWSCLI(t *testing.T) {
	t.Parallel()
	e := newEnvClock(t, time.Now, nil)
	hs := httptest.NewServer(e.srv)
	t.Cleanup(hs.Close)
	cli := newAWSCLI(t, hs.URL)
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(cli.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Policies.
	write("policy.json", []byte(testPolicy))
	var created struct {
		PolicyName, PolicyArn, PolicyDocument, PolicyVersionId string
	}
	cli.ok(&created, "iot", "create-policy", "--policy-name", "dev", "--policy-document", "file://policy.json")
	want := struct{ PolicyName, PolicyArn, PolicyDocument, PolicyVersionId string }{
		"dev", "arn:aws:iot:us-east-1:123456789012:policy/dev", testPolicy, "1",
	}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("create-policy (-want +got):\n%s", diff)
	}
	cli.fails("ResourceAlreadyExistsException", "iot", "create-policy", "--policy-name", "dev", "--policy-document", "file://policy.json")
	write("bad.json", []byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish"}}`))
	cli.fails("MalformedPolicyException", "iot", "create-policy", "--policy-name", "bad", "--policy-document", "file://bad.json")
	var got struct {
		PolicyName, DefaultVersionId, PolicyDocument, CreationDate string
	}
	cli.ok(&got, "iot", "get-policy", "--policy-name", "dev")
	if got.PolicyName != "dev" || got.DefaultVersionId != "1" || got.PolicyDocument != testPolicy || got.CreationDate == "" {
		t.Errorf("get-policy: %+v", got)
	}

	var cert struct{ CertificateArn string }
	cli.ok(&cert, "iot", "create-keys-and-certificate", "--set-as-active")
	cli.ok(nil, "iot", "attach-policy", "--policy-name", "dev", "--target", cert.CertificateArn)
	var attached struct {
		Policies []struct{ PolicyName, PolicyArn string }
	}
	cli.ok(&attached, "iot", "list-attached-policies", "--target", cert.CertificateArn)
	if len(attached.Policies) != 1 || attached.Policies[0].PolicyName != "dev" {
		t.Errorf("list-attached-policies: %+v", attached)
	}
	cli.ok(nil, "iot", "detach-policy", "--policy-name", "dev", "--target", cert.CertificateArn)
	if ps, err := e.reg.AttachedPolicies(cert.CertificateArn); err != nil || len(ps) != 0 {
		t.Errorf("after detach-policy: %v, %v", ps, err)
	}

	// Thing groups.
	var group struct{ ThingGroupName, ThingGroupArn, ThingGroupId string }
	cli.ok(&group, "iot", "create-thing-group", "--thing-group-name", "boxes",
		"--thing-group-properties", `{"thingGroupDescription":"all boxes","attributePayload":{"attributes":{"site":"berlin"}}}`)
	if group.ThingGroupName != "boxes" || group.ThingGroupArn != "arn:aws:iot:us-east-1:123456789012:thinggroup/boxes" || group.ThingGroupId == "" {
		t.Errorf("create-thing-group: %+v", group)
	}
	cli.ok(nil, "iot", "create-thing", "--thing-name", "box-1")
	cli.ok(nil, "iot", "add-thing-to-thing-group", "--thing-group-name", "boxes", "--thing-name", "box-1")
	var groups struct {
		ThingGroups []struct{ GroupName, GroupArn string }
	}
	cli.ok(&groups, "iot", "list-thing-groups-for-thing", "--thing-name", "box-1")
	if len(groups.ThingGroups) != 1 || groups.ThingGroups[0].GroupArn != group.ThingGroupArn {
		t.Errorf("list-thing-groups-for-thing: %+v", groups)
	}
	if err := e.reg.AttachPolicy("dev", group.ThingGroupArn); err != nil {
		t.Fatal(err)
	}
	eff, err := e.reg.EffectivePolicies(cert.CertificateArn[strings.LastIndex(cert.CertificateArn, "/")+1:], "box-1")
	if err != nil || len(eff) != 1 || eff[0].Name != "dev" {
		t.Errorf("policy through the group: %v, %v", eff, err)
	}

	// CA certificates: the verification certificate carries the
	// registration code, then device certificates of that CA register.
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var code struct{ RegistrationCode string }
	cli.ok(&code, "iot", "get-registration-code")
	verifPEM, _, err := ca.NewKeysAndCertificate(code.RegistrationCode)
	if err != nil {
		t.Fatal(err)
	}
	wrongPEM, _, err := ca.NewKeysAndCertificate("not-the-code")
	if err != nil {
		t.Fatal(err)
	}
	write("ca.pem", ca.CertPEM)
	write("verif.pem", verifPEM)
	write("wrong.pem", wrongPEM)
	cli.fails("RegistrationCodeValidationException", "iot", "register-ca-certificate",
		"--ca-certificate", "file://ca.pem", "--verification-cert", "file://wrong.pem")
	var caOut struct{ CertificateArn, CertificateId string }
	cli.ok(&caOut, "iot", "register-ca-certificate", "--ca-certificate", "file://ca.pem", "--verification-cert", "file://verif.pem",
		"--set-as-active", "--allow-auto-registration", "--registration-config", `{"templateBody":"{\"Resources\":{}}"}`)
	if caOut.CertificateId != pki.CertificateID(ca.Cert.Raw) || !strings.HasSuffix(caOut.CertificateArn, ":cacert/"+caOut.CertificateId) {
		t.Errorf("register-ca-certificate: %+v", caOut)
	}
	var caDesc struct {
		CertificateDescription struct{ Status, AutoRegistrationStatus string }
		RegistrationConfig     struct{ TemplateBody string }
	}
	cli.ok(&caDesc, "iot", "describe-ca-certificate", "--certificate-id", caOut.CertificateId)
	if caDesc.CertificateDescription.Status != "ACTIVE" || caDesc.CertificateDescription.AutoRegistrationStatus != "ENABLE" ||
		caDesc.RegistrationConfig.TemplateBody != `{"Resources":{}}` {
		t.Errorf("describe-ca-certificate: %+v", caDesc)
	}

	devPEM, _, err := ca.NewKeysAndCertificate("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	write("dev.pem", devPEM)
	var reg struct{ CertificateArn, CertificateId string }
	cli.ok(&reg, "iot", "register-certificate", "--certificate-pem", "file://dev.pem", "--ca-certificate-pem", "file://ca.pem", "--set-as-active")
	var desc struct {
		CertificateDescription struct{ Status, CaCertificateId string }
	}
	cli.ok(&desc, "iot", "describe-certificate", "--certificate-id", reg.CertificateId)
	if desc.CertificateDescription.Status != "ACTIVE" || desc.CertificateDescription.CaCertificateId != caOut.CertificateId {
		t.Errorf("describe-certificate after register-certificate: %+v", desc)
	}
	// A certificate of an unregistered CA is refused.
	other, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	strayPEM, _, err := other.NewKeysAndCertificate("stray")
	if err != nil {
		t.Fatal(err)
	}
	write("stray.pem", strayPEM)
	cli.fails("CertificateValidationException", "iot", "register-certificate", "--certificate-pem", "file://stray.pem")
}
