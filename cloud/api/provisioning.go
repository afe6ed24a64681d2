package api

import (
	"errors"
	"net/http"

	"github.com/iotagent/iotagent/cloud/provisioning"
	"github.com/iotagent/iotagent/cloud/registry"
)

// Templates stores fleet provisioning templates. *registry.Registry
// satisfies it.
type Templates interface {
	CreateProvisioningTemplate(t registry.ProvisioningTemplate) (registry.ProvisioningTemplate, error)
	DescribeProvisioningTemplate(name string) (registry.ProvisioningTemplate, error)
	ListProvisioningTemplates() ([]registry.ProvisioningTemplate, error)
	DeleteProvisioningTemplate(name string) error
}

func init() {
	mapTemplate := func(in *templateIn, err error) error { return fromRegistry(err, templateNotFound(in.Name)) }
	routes = append(routes,
		op[createTemplateIn]{"CreateProvisioningTemplate", svcControl, http.MethodPost, "/provisioning-templates", (*Server).createProvisioningTemplate,
			func(_ *createTemplateIn, err error) error { return fromRegistry(err, "") }}.route(),
		op[struct{}]{"ListProvisioningTemplates", svcControl, http.MethodGet, "/provisioning-templates", (*Server).listProvisioningTemplates, nil}.route(),
		op[templateIn]{"DescribeProvisioningTemplate", svcControl, http.MethodGet, "/provisioning-templates/{templateName}", (*Server).describeProvisioningTemplate, mapTemplate}.route(),
		op[templateIn]{"DeleteProvisioningTemplate", svcControl, http.MethodDelete, "/provisioning-templates/{templateName}", (*Server).deleteProvisioningTemplate, mapTemplate}.route(),
	)
}

func (s *Server) templates() (Templates, error) {
	if s.o.Templates == nil || s.o.Registry == nil {
		return nil, internal("Fleet provisioning")
	}
	return s.o.Templates, nil
}

func checkTemplateName(v string) error {
	if err := checkLen(v, "templateName", 1, 36); err != nil {
		return err
	}
	if !registry.ValidTemplateName(v) {
		return validation(v, "templateName", "Member must satisfy regular expression pattern: ^[0-9A-Za-z_-]+$")
	}
	return nil
}

func templateNotFound(name string) string {
	return "The provisioning template " + name + " does not exist."
}

type provisioningHook struct {
	PayloadVersion string `json:"payloadVersion,omitempty"`
	TargetARN      string `json:"targetArn"`
}

type createTemplateIn struct {
	TemplateName        string            `json:"templateName"`
	Description         string            `json:"description"`
	TemplateBody        *string           `json:"templateBody"`
	Enabled             bool              `json:"enabled"`
	ProvisioningRoleARN string            `json:"provisioningRoleArn"`
	PreProvisioningHook *provisioningHook `json:"preProvisioningHook"`
	Tags                []struct {
		Key   string `json:"Key"`
		Value string `json:"Value"`
	} `json:"tags"`
	Type string `json:"type"`
}

func (in *createTemplateIn) validate() error {
	if err := checkTemplateName(in.TemplateName); err != nil {
		return err
	}
	if in.TemplateBody == nil {
		return validation("null", "templateBody", "Member must not be null")
	}
	if err := checkLen(*in.TemplateBody, "templateBody", 0, registry.MaxTemplateBodyLen); err != nil {
		return err
	}
	if err := checkLen(in.Description, "description", 0, registry.MaxTemplateDescriptionLen); err != nil {
		return err
	}
	if err := checkLen(in.ProvisioningRoleARN, "provisioningRoleArn", 20, 2048); err != nil {
		return err
	}
	switch in.Type {
	case "", registry.TemplateTypeFleetProvisioning, registry.TemplateTypeJITP:
	default:
		return validation(in.Type, "type", "Member must satisfy enum value set: [FLEET_PROVISIONING, JITP]")
	}
	if in.PreProvisioningHook != nil {
		if in.Type == registry.TemplateTypeJITP {
			return invalid("A pre-provisioning hook is only supported for FLEET_PROVISIONING templates.")
		}
		if in.PreProvisioningHook.TargetARN == "" {
			return validation("null", "preProvisioningHook.targetArn", "Member must not be null")
		}
		if v := in.PreProvisioningHook.PayloadVersion; v != "" && v != provisioning.HookPayloadVersion {
			return invalid("Payload version %s is not supported.", truncate(v, 32))
		}
	}
	if _, err := provisioning.Parse(*in.TemplateBody); err != nil {
		return invalid("The template body is not valid: %v", err)
	}
	return nil
}

// createProvisioningTemplate serves CreateProvisioningTemplate:
// POST /provisioning-templates.
func (s *Server) createProvisioningTemplate(_ *call, in *createTemplateIn) (any, error) {
	ts, err := s.templates()
	if err != nil {
		return nil, err
	}
	t := registry.ProvisioningTemplate{
		Name:        in.TemplateName,
		Description: in.Description,
		Body:        *in.TemplateBody,
		Enabled:     in.Enabled,
		RoleARN:     in.ProvisioningRoleARN,
		Type:        in.Type,
	}
	if h := in.PreProvisioningHook; h != nil {
		t.Hook = &registry.ProvisioningHook{TargetARN: h.TargetARN, PayloadVersion: h.PayloadVersion}
		if t.Hook.PayloadVersion == "" {
			t.Hook.PayloadVersion = provisioning.HookPayloadVersion
		}
	}
	for _, tag := range in.Tags {
		if t.Tags == nil {
			t.Tags = map[string]string{}
		}
		t.Tags[tag.Key] = tag.Value
	}
	out, err := ts.CreateProvisioningTemplate(t)
	if errors.Is(err, registry.ErrExists) {
		return nil, errorf(http.StatusConflict, "ResourceAlreadyExistsException", "The provisioning template %s already exists.", in.TemplateName)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		TemplateARN      string `json:"templateArn"`
		TemplateName     string `json:"templateName"`
		DefaultVersionID int64  `json:"defaultVersionId"`
	}{out.ARN, out.Name, out.DefaultVersionID}, nil
}

// templateIn is the input of operations on one provisioning template.
type templateIn struct {
	Name string `uri:"templateName" check:"template"`
}

// describeProvisioningTemplate serves DescribeProvisioningTemplate:
// GET /provisioning-templates/{templateName}.
func (s *Server) describeProvisioningTemplate(_ *call, in *templateIn) (any, error) {
	ts, err := s.templates()
	if err != nil {
		return nil, err
	}
	t, err := ts.DescribeProvisioningTemplate(in.Name)
	if err != nil {
		return nil, err
	}
	var hook *provisioningHook
	if t.Hook != nil {
		hook = &provisioningHook{PayloadVersion: t.Hook.PayloadVersion, TargetARN: t.Hook.TargetARN}
	}
	return struct {
		TemplateARN         string            `json:"templateArn"`
		TemplateName        string            `json:"templateName"`
		Description         string            `json:"description,omitempty"`
		CreationDate        epoch             `json:"creationDate"`
		LastModifiedDate    epoch             `json:"lastModifiedDate"`
		DefaultVersionID    int64             `json:"defaultVersionId"`
		TemplateBody        string            `json:"templateBody"`
		Enabled             bool              `json:"enabled"`
		ProvisioningRoleARN string            `json:"provisioningRoleArn,omitempty"`
		PreProvisioningHook *provisioningHook `json:"preProvisioningHook,omitempty"`
		Type                string            `json:"type"`
	}{t.ARN, t.Name, t.Description, epoch(t.CreatedAt), epoch(t.UpdatedAt), t.DefaultVersionID, t.Body,
		t.Enabled, t.RoleARN, hook, t.Type}, nil
}

type templateSummary struct {
	TemplateARN      string `json:"templateArn"`
	TemplateName     string `json:"templateName"`
	Description      string `json:"description,omitempty"`
	CreationDate     epoch  `json:"creationDate"`
	LastModifiedDate epoch  `json:"lastModifiedDate"`
	Enabled          bool   `json:"enabled"`
	Type             string `json:"type"`
}

// listProvisioningTemplates serves ListProvisioningTemplates:
// GET /provisioning-templates?maxResults=&nextToken=.
func (s *Server) listProvisioningTemplates(c *call, _ *struct{}) (any, error) {
	ts, err := s.templates()
	if err != nil {
		return nil, err
	}
	all, err := ts.ListProvisioningTemplates()
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return nil, err
	}
	out := make([]templateSummary, 0, end-start)
	for _, t := range all[start:end] {
		out = append(out, templateSummary{t.ARN, t.Name, t.Description, epoch(t.CreatedAt), epoch(t.UpdatedAt), t.Enabled, t.Type})
	}
	return struct {
		Templates []templateSummary `json:"templates"`
		NextToken string            `json:"nextToken,omitempty"`
	}{out, next}, nil
}

// deleteProvisioningTemplate serves DeleteProvisioningTemplate:
// DELETE /provisioning-templates/{templateName}.
func (s *Server) deleteProvisioningTemplate(_ *call, in *templateIn) (any, error) {
	ts, err := s.templates()
	if err != nil {
		return nil, err
	}
	return nil, ts.DeleteProvisioningTemplate(in.Name)
}
