package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"time"

	"github.com/iotagent/iotagent/cloud/store"
)

// templatesBucket holds provisioning templates by name.
const templatesBucket = "registry.provisioningtemplates"

// Provisioning template types, as AWS names them.
const (
	TemplateTypeFleetProvisioning = "FLEET_PROVISIONING"
	TemplateTypeJITP              = "JITP"
)

// Limits of a provisioning template record (botocore model).
const (
	MaxTemplateBodyLen        = 10240
	MaxTemplateDescriptionLen = 500
)

var templateNameRE = regexp.MustCompile(`^[0-9A-Za-z_-]{1,36}$`)

// ValidTemplateName reports whether name satisfies AWS's provisioning
// template name rule, ^[0-9A-Za-z_-]{1,36}$.
func ValidTemplateName(name string) bool { return templateNameRE.MatchString(name) }

// ProvisioningHook is a template's pre-provisioning hook. On AWS TargetARN
// names a Lambda function; iotsim also accepts an http(s) URL (a webhook).
type ProvisioningHook struct {
	TargetARN      string `json:"targetArn"`
	PayloadVersion string `json:"payloadVersion,omitempty"`
}

// ProvisioningTemplate is a stored provisioning template. Body is the JSON
// template document as a string, as AWS keeps it.
type ProvisioningTemplate struct {
	Name             string            `json:"templateName"`
	ARN              string            `json:"templateArn"`
	Description      string            `json:"description,omitempty"`
	Body             string            `json:"templateBody"`
	Enabled          bool              `json:"enabled"`
	RoleARN          string            `json:"provisioningRoleArn"`
	Hook             *ProvisioningHook `json:"preProvisioningHook,omitempty"`
	Type             string            `json:"type"`
	DefaultVersionID int64             `json:"defaultVersionId"`
	Tags             map[string]string `json:"tags,omitempty"`
	CreatedAt        time.Time         `json:"creationDate"`
	UpdatedAt        time.Time         `json:"lastModifiedDate"`
}

// CreateProvisioningTemplate stores a new template. Name, ARN, version and
// timestamps are filled in; Type "" means FLEET_PROVISIONING. A bad name,
// type, an over-long body or description, or a hook on a JITP template give
// ErrInvalid; an existing name gives ErrExists. The body itself is not
// interpreted here (cloud/provisioning validates it).
func (r *Registry) CreateProvisioningTemplate(t ProvisioningTemplate) (ProvisioningTemplate, error) {
	if !ValidTemplateName(t.Name) {
		return ProvisioningTemplate{}, fmt.Errorf("create provisioning template %q: name must match ^[0-9A-Za-z_-]{1,36}$: %w", t.Name, ErrInvalid)
	}
	if t.Type == "" {
		t.Type = TemplateTypeFleetProvisioning
	}
	switch {
	case t.Type != TemplateTypeFleetProvisioning && t.Type != TemplateTypeJITP:
		return ProvisioningTemplate{}, fmt.Errorf("create provisioning template %q: type %q: %w", t.Name, t.Type, ErrInvalid)
	case len(t.Body) > MaxTemplateBodyLen:
		return ProvisioningTemplate{}, fmt.Errorf("create provisioning template %q: body longer than %d: %w", t.Name, MaxTemplateBodyLen, ErrInvalid)
	case len(t.Description) > MaxTemplateDescriptionLen:
		return ProvisioningTemplate{}, fmt.Errorf("create provisioning template %q: description longer than %d: %w", t.Name, MaxTemplateDescriptionLen, ErrInvalid)
	case t.Hook != nil && t.Type == TemplateTypeJITP:
		return ProvisioningTemplate{}, fmt.Errorf("create provisioning template %q: a pre-provisioning hook works only for FLEET_PROVISIONING: %w", t.Name, ErrInvalid)
	case t.Hook != nil && t.Hook.TargetARN == "":
		return ProvisioningTemplate{}, fmt.Errorf("create provisioning template %q: pre-provisioning hook without a target: %w", t.Name, ErrInvalid)
	}
	now := r.now().UTC()
	t.ARN = r.arn("provisioningtemplate", t.Name)
	t.DefaultVersionID = 1
	t.CreatedAt, t.UpdatedAt = now, now
	t.Tags = maps.Clone(t.Tags)
	if t.Hook != nil {
		h := *t.Hook
		t.Hook = &h
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.db.Update(func(tx *store.Tx) error {
		if _, err := tx.Get(templatesBucket, t.Name); err == nil {
			return fmt.Errorf("create provisioning template %q: %w", t.Name, ErrExists)
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("create provisioning template %q: %w", t.Name, err)
		}
		return putJSON(tx, templatesBucket, t.Name, t)
	})
	if err != nil {
		return ProvisioningTemplate{}, err
	}
	return t, nil
}

// DescribeProvisioningTemplate returns the template or ErrNotFound.
func (r *Registry) DescribeProvisioningTemplate(name string) (ProvisioningTemplate, error) {
	if !ValidTemplateName(name) {
		return ProvisioningTemplate{}, fmt.Errorf("describe provisioning template %q: %w", name, ErrNotFound)
	}
	raw, err := r.db.Get(templatesBucket, name)
	if err != nil {
		return ProvisioningTemplate{}, fmt.Errorf("describe provisioning template %q: %w", name, notFound(err))
	}
	// Every RegisterThing reads its template: the stored bytes are decoded
	// again only when they changed.
	if v, ok := r.templates.Load(name); ok {
		if d := v.(*decodedTemplate); bytes.Equal(d.raw, raw) {
			return d.t.clone(), nil
		}
	}
	var t ProvisioningTemplate
	if err := json.Unmarshal(raw, &t); err != nil {
		return ProvisioningTemplate{}, fmt.Errorf("describe provisioning template %q: decode %s/%s: %w", name, templatesBucket, name, err)
	}
	r.templates.Store(name, &decodedTemplate{raw: raw, t: t.clone()})
	return t, nil
}

// decodedTemplate is a stored template's bytes and their decoding.
type decodedTemplate struct {
	raw []byte
	t   ProvisioningTemplate
}

// clone copies t with its own hook and tags, so that a caller's changes
// do not reach the cache.
func (t ProvisioningTemplate) clone() ProvisioningTemplate {
	if t.Hook != nil {
		h := *t.Hook
		t.Hook = &h
	}
	t.Tags = maps.Clone(t.Tags)
	return t
}

// ListProvisioningTemplates returns every template, ordered by name.
func (r *Registry) ListProvisioningTemplates() ([]ProvisioningTemplate, error) {
	var out []ProvisioningTemplate
	err := r.db.ForEach(templatesBucket, "", func(_ string, v []byte) error {
		var t ProvisioningTemplate
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list provisioning templates: %w", err)
	}
	return out, nil
}

// DeleteProvisioningTemplate deletes a template; an unknown name gives
// ErrNotFound, as AWS's DeleteProvisioningTemplate does.
func (r *Registry) DeleteProvisioningTemplate(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.db.Update(func(tx *store.Tx) error {
		if _, err := tx.Get(templatesBucket, name); err != nil {
			return fmt.Errorf("delete provisioning template %q: %w", name, notFound(err))
		}
		return tx.Delete(templatesBucket, name)
	})
}

// SetThingAttributes replaces an existing thing's type and attributes (nil
// or empty attrs removes them all) and bumps its version. Fleet
// provisioning's OverrideSettings (REPLACE, MERGE) use it. An unknown thing
// gives ErrNotFound, bad attributes ErrInvalid.
func (r *Registry) SetThingAttributes(name, typeName string, attrs map[string]string) (Thing, error) {
	var out Thing
	err := r.Update(func(t *Txn) (err error) {
		out, err = t.SetThingAttributes(name, typeName, attrs)
		return err
	})
	if err != nil {
		return Thing{}, err
	}
	return out, nil
}
