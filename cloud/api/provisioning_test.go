package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
)

func withTemplates(o *Options) { o.Templates = o.Registry.(*registry.Registry) }

func createTemplateBody(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	in := map[string]any{
		"templateName":        "fleet-1",
		"templateBody":        provisioning.DefaultTemplateBody(false),
		"provisioningRoleArn": "arn:aws:iam::123456789012:role/Provisioning",
		"enabled":             true,
	}
	for k, v := range fields {
		if v == nil {
			delete(in, k)
		} else {
			in[k] = v
		}
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProvisioningTemplates(t *testing.T) {
	e := newEnv(t, withTemplates)
	r := e.do(t, http.MethodPost, "/provisioning-templates", createTemplateBody(t, map[string]any{
		"description":         "pis",
		"preProvisioningHook": map[string]any{"targetArn": "http://127.0.0.1:9/hook"},
	}))
	var created map[string]any
	r.json(t, &created)
	want := map[string]any{
		"templateArn":      "arn:aws:iot:us-east-1:123456789012:provisioningtemplate/fleet-1",
		"templateName":     "fleet-1",
		"defaultVersionId": float64(1),
	}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("create (-want +got):\n%s", diff)
	}

	var desc map[string]any
	e.do(t, http.MethodGet, "/provisioning-templates/fleet-1", nil).json(t, &desc)
	wantDesc := map[string]any{
		"templateArn": want["templateArn"], "templateName": "fleet-1", "description": "pis",
		"creationDate": float64(testNow.Unix()), "lastModifiedDate": float64(testNow.Unix()),
		"defaultVersionId": float64(1), "templateBody": provisioning.DefaultTemplateBody(false), "enabled": true,
		"provisioningRoleArn": "arn:aws:iam::123456789012:role/Provisioning", "type": "FLEET_PROVISIONING",
		"preProvisioningHook": map[string]any{"targetArn": "http://127.0.0.1:9/hook", "payloadVersion": "2020-04-01"},
	}
	if diff := cmp.Diff(wantDesc, desc); diff != "" {
		t.Errorf("describe (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"duplicate", createTemplateBody(t, nil), 409, "ResourceAlreadyExistsException"},
		{"bad name", createTemplateBody(t, map[string]any{"templateName": "bad name"}), 400, "InvalidRequestException"},
		{"long name", createTemplateBody(t, map[string]any{"templateName": strings.Repeat("a", 37)}), 400, "InvalidRequestException"},
		{"no body", createTemplateBody(t, map[string]any{"templateName": "x", "templateBody": nil}), 400, "InvalidRequestException"},
		{"bad body", createTemplateBody(t, map[string]any{"templateName": "x", "templateBody": `{"Resources":{"a":{"Type":"AWS::S3::Bucket"}}}`}), 400, "InvalidRequestException"},
		{"no role", createTemplateBody(t, map[string]any{"templateName": "x", "provisioningRoleArn": nil}), 400, "InvalidRequestException"},
		{"bad type", createTemplateBody(t, map[string]any{"templateName": "x", "type": "OTHER"}), 400, "InvalidRequestException"},
		{"hook on JITP", createTemplateBody(t, map[string]any{"templateName": "x", "type": "JITP", "preProvisioningHook": map[string]any{"targetArn": "arn:x"}}), 400, "InvalidRequestException"},
		{"not json", []byte("{"), 400, "InvalidRequestException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.wantError(t, e.do(t, http.MethodPost, "/provisioning-templates", tc.body), tc.status, tc.code)
		})
	}
	e.wantError(t, e.do(t, http.MethodGet, "/provisioning-templates/nope", nil), 404, "ResourceNotFoundException")
	e.wantError(t, e.do(t, http.MethodDelete, "/provisioning-templates/nope", nil), 404, "ResourceNotFoundException")

	for _, n := range []string{"fleet-2", "fleet-3"} {
		e.do(t, http.MethodPost, "/provisioning-templates", createTemplateBody(t, map[string]any{"templateName": n, "type": "JITP"})).json(t, &created)
	}
	var names []string
	next := ""
	for range 5 {
		var page struct {
			Templates []struct {
				TemplateName string `json:"templateName"`
				Type         string `json:"type"`
			} `json:"templates"`
			NextToken string `json:"nextToken"`
		}
		q := "/provisioning-templates?maxResults=2"
		if next != "" {
			q += "&nextToken=" + next
		}
		e.do(t, http.MethodGet, q, nil).json(t, &page)
		for _, tp := range page.Templates {
			names = append(names, tp.TemplateName+":"+tp.Type)
		}
		if next = page.NextToken; next == "" {
			break
		}
	}
	if diff := cmp.Diff([]string{"fleet-1:FLEET_PROVISIONING", "fleet-2:JITP", "fleet-3:JITP"}, names); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if r := e.do(t, http.MethodDelete, "/provisioning-templates/fleet-2", nil); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	e.wantError(t, e.do(t, http.MethodGet, "/provisioning-templates/fleet-2", nil), 404, "ResourceNotFoundException")
}

func TestProvisioningTemplatesUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	e.wantError(t, e.do(t, http.MethodGet, "/provisioning-templates", nil), 500, "InternalFailureException")
}

func TestProvisioningTemplatesCLI(t *testing.T) {
	t.Parallel()
	e := newEnvClock(t, time.Now, withTemplates)
	hs := httptest.NewServer(e.srv)
	t.Cleanup(hs.Close)
	cli := newAWSCLI(t, hs.URL)
	if err := os.WriteFile(filepath.Join(cli.dir, "template.json"), []byte(provisioning.DefaultTemplateBody(true)), 0o644); err != nil {
		t.Fatal(err)
	}
	var created struct {
		TemplateArn      string `json:"templateArn"`
		TemplateName     string `json:"templateName"`
		DefaultVersionID int    `json:"defaultVersionId"`
	}
	cli.ok(&created, "iot", "create-provisioning-template", "--template-name", "cli-fleet",
		"--template-body", "file://template.json", "--provisioning-role-arn", "arn:aws:iam::123456789012:role/Provisioning",
		"--enabled", "--description", "from the CLI")
	if created.TemplateArn != "arn:aws:iot:us-east-1:123456789012:provisioningtemplate/cli-fleet" || created.DefaultVersionID != 1 {
		t.Errorf("create-provisioning-template: %+v", created)
	}
	var desc struct {
		TemplateName string `json:"templateName"`
		TemplateBody string `json:"templateBody"`
		Enabled      bool   `json:"enabled"`
		Type         string `json:"type"`
		CreationDate string `json:"creationDate"`
		Description  string `json:"description"`
	}
	cli.ok(&desc, "iot", "describe-provisioning-template", "--template-name", "cli-fleet")
	if desc.TemplateBody != provisioning.DefaultTemplateBody(true) || !desc.Enabled || desc.Type != "FLEET_PROVISIONING" ||
		desc.Description != "from the CLI" || desc.CreationDate == "" {
		t.Errorf("describe-provisioning-template: %+v", desc)
	}
	var list struct {
		Templates []struct {
			TemplateName string `json:"templateName"`
		} `json:"templates"`
	}
	cli.ok(&list, "iot", "list-provisioning-templates")
	if len(list.Templates) != 1 || list.Templates[0].TemplateName != "cli-fleet" {
		t.Errorf("list-provisioning-templates: %+v", list)
	}
	cli.fails("ResourceAlreadyExistsException", "iot", "create-provisioning-template", "--template-name", "cli-fleet",
		"--template-body", "file://template.json", "--provisioning-role-arn", "arn:aws:iam::123456789012:role/Provisioning")
	cli.fails("InvalidRequestException", "iot", "create-provisioning-template", "--template-name", "broken",
		"--template-body", `{"Resources":{"a":{"Type":"AWS::IoT::Nope"}}}`, "--provisioning-role-arn", "arn:aws:iam::123456789012:role/Provisioning")
	cli.ok(nil, "iot", "delete-provisioning-template", "--template-name", "cli-fleet")
	cli.fails("ResourceNotFoundException", "iot", "describe-provisioning-template", "--template-name", "cli-fleet")
}
