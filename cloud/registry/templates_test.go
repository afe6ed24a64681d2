package registry

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/store"
)

func newTemplateRegistry(t *testing.T) *Registry {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "r.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	now := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	return New(db, "us-east-1", "123456789012", func() time.Time { return now })
}

func TestProvisioningTemplates(t *testing.T) {
	r := newTemplateRegistry(t)
	got, err := r.CreateProvisioningTemplate(ProvisioningTemplate{Name: "fleet", Body: "{}", Enabled: true, RoleARN: "arn:aws:iam::1:role/x"})
	if err != nil {
		t.Fatal(err)
	}
	if got.ARN != "arn:aws:iot:us-east-1:123456789012:provisioningtemplate/fleet" || got.Type != TemplateTypeFleetProvisioning || got.DefaultVersionID != 1 {
		t.Errorf("created %+v", got)
	}
	desc, err := r.DescribeProvisioningTemplate("fleet")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, desc); diff != "" {
		t.Errorf("describe (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name string
		t    ProvisioningTemplate
		want error
	}{
		{"exists", ProvisioningTemplate{Name: "fleet"}, ErrExists},
		{"bad name", ProvisioningTemplate{Name: "a/b"}, ErrInvalid},
		{"long name", ProvisioningTemplate{Name: strings.Repeat("a", 37)}, ErrInvalid},
		{"bad type", ProvisioningTemplate{Name: "x", Type: "NOPE"}, ErrInvalid},
		{"long body", ProvisioningTemplate{Name: "x", Body: strings.Repeat(" ", MaxTemplateBodyLen+1)}, ErrInvalid},
		{"hook on JITP", ProvisioningTemplate{Name: "x", Type: TemplateTypeJITP, Hook: &ProvisioningHook{TargetARN: "a"}}, ErrInvalid},
		{"hook without target", ProvisioningTemplate{Name: "x", Hook: &ProvisioningHook{}}, ErrInvalid},
	} {
		if _, err := r.CreateProvisioningTemplate(tc.t); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := r.CreateProvisioningTemplate(ProvisioningTemplate{Name: "jitp", Type: TemplateTypeJITP}); err != nil {
		t.Fatal(err)
	}
	list, err := r.ListProvisioningTemplates()
	if err != nil || len(list) != 2 || list[0].Name != "fleet" || list[1].Name != "jitp" {
		t.Errorf("list: %+v %v", list, err)
	}
	if err := r.DeleteProvisioningTemplate("fleet"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteProvisioningTemplate("fleet"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := r.DescribeProvisioningTemplate("fleet"); !errors.Is(err, ErrNotFound) {
		t.Errorf("describe deleted: %v", err)
	}
}

func TestSetThingAttributes(t *testing.T) {
	r := newTemplateRegistry(t)
	if _, err := r.CreateThing("box", "", map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	th, err := r.SetThingAttributes("box", "pi", map[string]string{"a": "1", "b": "2"})
	if err != nil || th.Version != 2 || th.TypeName != "pi" || len(th.Attributes) != 2 {
		t.Fatalf("set: %+v %v", th, err)
	}
	if th, _ := r.SetThingAttributes("box", "pi", map[string]string{"a": "1", "b": "2"}); th.Version != 2 {
		t.Errorf("an unchanged set bumped the version to %d", th.Version)
	}
	if _, err := r.SetThingAttributes("nope", "", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown thing: %v", err)
	}
	if _, err := r.SetThingAttributes("box", "", map[string]string{"bad key!": "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad attribute: %v", err)
	}
}
