package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
)

// IdentityRegistry is the part of the registry behind the identity
// operations (IoT policies, thing groups, CA certificates).
// *registry.Registry satisfies it; a Registry that does not makes those
// operations fail with InternalFailureException.
type IdentityRegistry interface {
	CreatePolicy(name, document string) (registry.Policy, error)
	GetPolicy(name string) (registry.Policy, error)
	ListPolicies() ([]registry.Policy, error)
	AttachPolicy(name, target string) error
	DetachPolicy(name, target string) error
	AttachedPolicies(target string) ([]registry.Policy, error)
	CreateThingGroup(name string, attrs map[string]string) (registry.ThingGroup, error)
	DescribeThingGroup(name string) (registry.ThingGroup, error)
	AddThingToThingGroup(group, thing string) error
	ThingGroupsOf(thing string) ([]string, error)
	RegistrationCode() string
	RegisterCACertificate(caPEM []byte, active bool, autoRegistration bool, templateBody string) (registry.CACertificate, error)
	DescribeCACertificate(id string) (registry.CACertificate, error)
	RegisterCertificateWithCA(certPEM []byte, status string) (registry.Certificate, error)
}

func init() {
	routes = append(routes,
		newRoute(svcControl, http.MethodPost, "/policies/{policyName}", "CreatePolicy", (*Server).createPolicy),
		newRoute(svcControl, http.MethodGet, "/policies/{policyName}", "GetPolicy", (*Server).getPolicy),
		newRoute(svcControl, http.MethodGet, "/policies", "ListPolicies", (*Server).listPolicies),
		newRoute(svcControl, http.MethodPut, "/target-policies/{policyName}", "AttachPolicy", (*Server).attachPolicy),
		newRoute(svcControl, http.MethodPost, "/target-policies/{policyName}", "DetachPolicy", (*Server).detachPolicy),
		newRoute(svcControl, http.MethodPost, "/attached-policies/{target}", "ListAttachedPolicies", (*Server).listAttachedPolicies),
		newRoute(svcControl, http.MethodPut, "/thing-groups/addThingToThingGroup", "AddThingToThingGroup", (*Server).addThingToThingGroup),
		newRoute(svcControl, http.MethodPost, "/thing-groups/{thingGroupName}", "CreateThingGroup", (*Server).createThingGroup),
		newRoute(svcControl, http.MethodGet, "/thing-groups/{thingGroupName}", "DescribeThingGroup", (*Server).describeThingGroup),
		newRoute(svcControl, http.MethodGet, "/things/{thingName}/thing-groups", "ListThingGroupsForThing", (*Server).listThingGroupsForThing),
		newRoute(svcControl, http.MethodGet, "/registrationcode", "GetRegistrationCode", (*Server).getRegistrationCode),
		newRoute(svcControl, http.MethodPost, "/cacertificate", "RegisterCACertificate", (*Server).registerCACertificate),
		newRoute(svcControl, http.MethodGet, "/cacertificate/{caCertificateId}", "DescribeCACertificate", (*Server).describeCACertificate),
		newRoute(svcControl, http.MethodPost, "/certificate/register", "RegisterCertificate", (*Server).registerCertificate),
	)
}

func (s *Server) identity() (IdentityRegistry, error) {
	if reg, ok := s.o.Registry.(IdentityRegistry); ok {
		return reg, nil
	}
	return nil, internal("IoT policies, thing groups and CA certificates")
}

// fromIdentity maps the identity sentinels to AWS errors, then falls back
// to fromRegistry.
func fromIdentity(err error, notFound string) error {
	trim := func(sentinel error) string {
		s := strings.TrimSuffix(err.Error(), ": "+sentinel.Error())
		return strings.ToUpper(s[:1]) + s[1:]
	}
	switch {
	case errors.Is(err, registry.ErrMalformedPolicy):
		// The policy parser's words, without the registry's prefix.
		msg := err.Error()
		if _, after, ok := strings.Cut(msg, registry.ErrMalformedPolicy.Error()+": "); ok {
			msg = strings.TrimSuffix(after, ": policy: malformed policy document")
		}
		return errorf(http.StatusBadRequest, "MalformedPolicyException", "Policy document is malformed: %s", msg)
	case errors.Is(err, registry.ErrLimitExceeded):
		return errorf(http.StatusGone, "LimitExceededException", "%s", trim(registry.ErrLimitExceeded))
	case errors.Is(err, registry.ErrCertificateValidation):
		return errorf(http.StatusBadRequest, "CertificateValidationException", "%s", trim(registry.ErrCertificateValidation))
	}
	return fromRegistry(err, notFound)
}

// decodeBody decodes an optional JSON body into v.
func decodeBody(c *call, v any) error {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return invalid("The request body is not a valid JSON object: %v", err)
	}
	return nil
}

func required(field string) error {
	return invalid("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", field)
}

// checkPolicyName validates a policy name: 1-128 of [\w+=,.@-].
func checkPolicyName(v string) error {
	if err := checkLen(v, "policyName", 1, 128); err != nil {
		return err
	}
	if !registry.ValidPolicyName(v) {
		return validation(v, "policyName", `Member must satisfy regular expression pattern: [\w+=,.@-]+`)
	}
	return nil
}

func policyNotFound(name string) string { return "Policy not found (name=" + name + ")" }

// createPolicy serves CreatePolicy: POST /policies/{policyName}.
func (s *Server) createPolicy(c *call) error {
	name := c.labels["policyName"]
	if err := checkPolicyName(name); err != nil {
		return err
	}
	var in struct {
		PolicyDocument *string `json:"policyDocument"`
	}
	if err := decodeBody(c, &in); err != nil {
		return err
	}
	if in.PolicyDocument == nil {
		return required("policyDocument")
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	p, err := reg.CreatePolicy(name, *in.PolicyDocument)
	if errors.Is(err, registry.ErrExists) {
		return errorf(http.StatusConflict, "ResourceAlreadyExistsException", "Policy cannot be created - name already exists (name=%s)", name)
	}
	if err != nil {
		return fromIdentity(err, "")
	}
	return writeJSON(c.w, struct {
		PolicyName      string `json:"policyName"`
		PolicyARN       string `json:"policyArn"`
		PolicyDocument  string `json:"policyDocument"`
		PolicyVersionID string `json:"policyVersionId"`
	}{p.Name, p.ARN, p.Document, p.DefaultVersionID})
}

// getPolicy serves GetPolicy: GET /policies/{policyName}.
func (s *Server) getPolicy(c *call) error {
	name := c.labels["policyName"]
	if err := checkPolicyName(name); err != nil {
		return err
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	p, err := reg.GetPolicy(name)
	if err != nil {
		return fromIdentity(err, policyNotFound(name))
	}
	return writeJSON(c.w, struct {
		PolicyName       string `json:"policyName"`
		PolicyARN        string `json:"policyArn"`
		PolicyDocument   string `json:"policyDocument"`
		DefaultVersionID string `json:"defaultVersionId"`
		CreationDate     epoch  `json:"creationDate,omitzero"`
		LastModifiedDate epoch  `json:"lastModifiedDate,omitzero"`
		GenerationID     string `json:"generationId"`
	}{p.Name, p.ARN, p.Document, p.DefaultVersionID, epoch(p.CreatedAt), epoch(p.CreatedAt), generationID(p.ARN)})
}

type policySummary struct {
	PolicyName string `json:"policyName"`
	PolicyARN  string `json:"policyArn"`
}

func policySummaries(ps []registry.Policy) []policySummary {
	out := make([]policySummary, 0, len(ps))
	for _, p := range ps {
		out = append(out, policySummary{p.Name, p.ARN})
	}
	return out
}

// listPolicies serves ListPolicies: GET /policies, paged by marker/pageSize.
func (s *Server) listPolicies(c *call) error {
	desc := c.query.Get("isAscendingOrder") == "false"
	if _, err := boolParam(c.query, "isAscendingOrder"); err != nil {
		return err
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	ps, err := reg.ListPolicies()
	if err != nil {
		return fromIdentity(err, "")
	}
	if desc {
		ps = slices.Clone(ps)
		slices.Reverse(ps)
	}
	start, end, next, err := page(len(ps), c.query, "marker", "pageSize", 25, 250)
	if err != nil {
		return err
	}
	return writeJSON(c.w, struct {
		Policies   []policySummary `json:"policies"`
		NextMarker string          `json:"nextMarker,omitempty"`
	}{policySummaries(ps[start:end]), next})
}

func (s *Server) policyTarget(c *call, attach bool) error {
	name := c.labels["policyName"]
	if err := checkPolicyName(name); err != nil {
		return err
	}
	var in struct {
		Target string `json:"target"`
	}
	if err := decodeBody(c, &in); err != nil {
		return err
	}
	if in.Target == "" {
		return required("target")
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	op := reg.DetachPolicy
	if attach {
		op = reg.AttachPolicy
	}
	if err := op(name, in.Target); err != nil {
		return fromIdentity(err, "The policy "+name+" or the target "+truncate(in.Target, 256)+" cannot be found.")
	}
	return writeRaw(c.w, []byte("{}"))
}

// attachPolicy serves AttachPolicy: PUT /target-policies/{policyName}.
func (s *Server) attachPolicy(c *call) error { return s.policyTarget(c, true) }

// detachPolicy serves DetachPolicy: POST /target-policies/{policyName}.
func (s *Server) detachPolicy(c *call) error { return s.policyTarget(c, false) }

// listAttachedPolicies serves ListAttachedPolicies:
// POST /attached-policies/{target}?recursive=&marker=&pageSize=.
func (s *Server) listAttachedPolicies(c *call) error {
	target := c.labels["target"]
	if _, err := boolParam(c.query, "recursive"); err != nil {
		return err
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	ps, err := reg.AttachedPolicies(target)
	if err != nil {
		return fromIdentity(err, "The target "+truncate(target, 256)+" cannot be found.")
	}
	start, end, next, err := page(len(ps), c.query, "marker", "pageSize", 25, 250)
	if err != nil {
		return err
	}
	return writeJSON(c.w, struct {
		Policies   []policySummary `json:"policies"`
		NextMarker string          `json:"nextMarker,omitempty"`
	}{policySummaries(ps[start:end]), next})
}

// createThingGroup serves CreateThingGroup: POST /thing-groups/{thingGroupName}.
func (s *Server) createThingGroup(c *call) error {
	name := c.labels["thingGroupName"]
	if err := checkThingName("thingGroupName", name); err != nil {
		return err
	}
	var in struct {
		ParentGroupName      string `json:"parentGroupName"`
		ThingGroupProperties *struct {
			ThingGroupDescription string `json:"thingGroupDescription"`
			AttributePayload      *struct {
				Attributes map[string]string `json:"attributes"`
			} `json:"attributePayload"`
		} `json:"thingGroupProperties"`
	}
	if err := decodeBody(c, &in); err != nil {
		return err
	}
	if in.ParentGroupName != "" {
		if err := checkThingName("parentGroupName", in.ParentGroupName); err != nil {
			return err
		}
		return invalid("Thing group hierarchies (parentGroupName) are not supported by this simulator")
	}
	var attrs map[string]string
	if p := in.ThingGroupProperties; p != nil && p.AttributePayload != nil {
		attrs = p.AttributePayload.Attributes
		for k, v := range attrs {
			if err := checkAttribute(k, v); err != nil {
				return err
			}
		}
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	g, err := reg.CreateThingGroup(name, attrs)
	if errors.Is(err, registry.ErrExists) {
		return errorf(http.StatusConflict, "ResourceAlreadyExistsException", "Thing Group %s already exists with different tags", name)
	}
	if err != nil {
		return fromIdentity(err, "")
	}
	return writeJSON(c.w, struct {
		ThingGroupName string `json:"thingGroupName"`
		ThingGroupARN  string `json:"thingGroupArn"`
		ThingGroupID   string `json:"thingGroupId"`
	}{g.Name, g.ARN, g.ID})
}

// describeThingGroup serves DescribeThingGroup: GET /thing-groups/{thingGroupName}.
func (s *Server) describeThingGroup(c *call) error {
	name := c.labels["thingGroupName"]
	if err := checkThingName("thingGroupName", name); err != nil {
		return err
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	g, err := reg.DescribeThingGroup(name)
	if err != nil {
		return fromIdentity(err, "Thing Group "+name+" does not exist")
	}
	type attributePayload struct {
		Attributes map[string]string `json:"attributes"`
	}
	type properties struct {
		AttributePayload attributePayload `json:"attributePayload"`
	}
	type metadata struct {
		CreationDate epoch `json:"creationDate,omitzero"`
	}
	return writeJSON(c.w, struct {
		ThingGroupName       string     `json:"thingGroupName"`
		ThingGroupID         string     `json:"thingGroupId"`
		ThingGroupARN        string     `json:"thingGroupArn"`
		Version              int64      `json:"version"`
		ThingGroupProperties properties `json:"thingGroupProperties"`
		ThingGroupMetadata   metadata   `json:"thingGroupMetadata"`
	}{g.Name, g.ID, g.ARN, g.Version, properties{attributePayload{nonNil(g.Attributes)}}, metadata{epoch(g.CreatedAt)}})
}

// nameFromARN returns the name in a name field, or else the last part of
// an ARN field ("...:kind/<name>").
func nameFromARN(name, arn, kind string) string {
	if name != "" {
		return name
	}
	if _, after, ok := strings.Cut(arn, ":"+kind+"/"); ok {
		return after
	}
	return ""
}

// addThingToThingGroup serves AddThingToThingGroup:
// PUT /thing-groups/addThingToThingGroup.
func (s *Server) addThingToThingGroup(c *call) error {
	var in struct {
		ThingGroupName string `json:"thingGroupName"`
		ThingGroupARN  string `json:"thingGroupArn"`
		ThingName      string `json:"thingName"`
		ThingARN       string `json:"thingArn"`
	}
	if err := decodeBody(c, &in); err != nil {
		return err
	}
	group := nameFromARN(in.ThingGroupName, in.ThingGroupARN, "thinggroup")
	thing := nameFromARN(in.ThingName, in.ThingARN, "thing")
	if group == "" {
		return invalid("Either thingGroupName or thingGroupArn must be given")
	}
	if thing == "" {
		return invalid("Either thingName or thingArn must be given")
	}
	if err := checkThingName("thingGroupName", group); err != nil {
		return err
	}
	if err := checkThingName("thingName", thing); err != nil {
		return err
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	if err := reg.AddThingToThingGroup(group, thing); err != nil {
		if errors.Is(err, registry.ErrInvalid) {
			return invalid("Thing %s cannot be added to more than %d thing groups", thing, registry.MaxGroupsPerThing)
		}
		return fromIdentity(err, "The thing "+thing+" or the thing group "+group+" cannot be found.")
	}
	return writeRaw(c.w, []byte("{}"))
}

// listThingGroupsForThing serves ListThingGroupsForThing:
// GET /things/{thingName}/thing-groups.
func (s *Server) listThingGroupsForThing(c *call) error {
	thing := c.labels["thingName"]
	if err := checkThingName("thingName", thing); err != nil {
		return err
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	groups, err := reg.ThingGroupsOf(thing)
	if err != nil {
		return fromIdentity(err, thingNotFound(thing))
	}
	start, end, next, err := page(len(groups), c.query, "nextToken", "maxResults", 25, 250)
	if err != nil {
		return err
	}
	type nameAndARN struct {
		GroupName string `json:"groupName"`
		GroupARN  string `json:"groupArn"`
	}
	out := make([]nameAndARN, 0, end-start)
	for _, g := range groups[start:end] {
		out = append(out, nameAndARN{g, s.arn("thinggroup/" + g)})
	}
	return writeJSON(c.w, struct {
		ThingGroups []nameAndARN `json:"thingGroups"`
		NextToken   string       `json:"nextToken,omitempty"`
	}{out, next})
}

// getRegistrationCode serves GetRegistrationCode: GET /registrationcode.
func (s *Server) getRegistrationCode(c *call) error {
	reg, err := s.identity()
	if err != nil {
		return err
	}
	return writeJSON(c.w, struct {
		RegistrationCode string `json:"registrationCode"`
	}{reg.RegistrationCode()})
}

type templateLookup interface {
	DescribeProvisioningTemplate(name string) (registry.ProvisioningTemplate, error)
}

// registerCACertificate serves RegisterCACertificate:
// POST /cacertificate?setAsActive=&allowAutoRegistration=.
func (s *Server) registerCACertificate(c *call) error {
	active, err := boolParam(c.query, "setAsActive")
	if err != nil {
		return err
	}
	auto, err := boolParam(c.query, "allowAutoRegistration")
	if err != nil {
		return err
	}
	var in struct {
		CACertificate           string `json:"caCertificate"`
		VerificationCertificate string `json:"verificationCertificate"`
		CertificateMode         string `json:"certificateMode"`
		RegistrationConfig      *struct {
			TemplateBody string `json:"templateBody"`
			TemplateName string `json:"templateName"`
			RoleARN      string `json:"roleArn"`
		} `json:"registrationConfig"`
	}
	if err := decodeBody(c, &in); err != nil {
		return err
	}
	if in.CACertificate == "" {
		return required("caCertificate")
	}
	switch in.CertificateMode {
	case "", "DEFAULT":
		if in.VerificationCertificate == "" {
			return invalid("A verification certificate is required to register a CA certificate in DEFAULT mode")
		}
	case "SNI_ONLY":
		if in.VerificationCertificate != "" {
			return invalid("A verification certificate must not be given for a CA certificate in SNI_ONLY mode")
		}
	default:
		return validation(in.CertificateMode, "certificateMode", "Member must satisfy enum value set: [DEFAULT, SNI_ONLY]")
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	ca, err := pki.ParseCertificatePEM([]byte(in.CACertificate))
	if err != nil {
		return errorf(http.StatusBadRequest, "CertificateValidationException", "The CA certificate is not a valid PEM certificate")
	}
	if in.VerificationCertificate != "" {
		v, err := pki.ParseCertificatePEM([]byte(in.VerificationCertificate))
		if err != nil {
			return errorf(http.StatusBadRequest, "CertificateValidationException", "The verification certificate is not a valid PEM certificate")
		}
		if err := v.CheckSignatureFrom(ca); err != nil {
			return errorf(http.StatusBadRequest, "CertificateValidationException", "The verification certificate is not signed by the CA certificate")
		}
		if v.Subject.CommonName != reg.RegistrationCode() {
			return errorf(http.StatusBadRequest, "RegistrationCodeValidationException",
				"The verification certificate's common name is not this account's registration code")
		}
	}
	body := ""
	if rc := in.RegistrationConfig; rc != nil {
		body = rc.TemplateBody
		if rc.TemplateName != "" {
			tl, ok := s.o.Registry.(templateLookup)
			if !ok {
				return internal("Provisioning templates")
			}
			t, err := tl.DescribeProvisioningTemplate(rc.TemplateName)
			if err != nil {
				return fromIdentity(err, "The provisioning template "+rc.TemplateName+" cannot be found.")
			}
			body = t.Body
		}
	}
	rc, err := reg.RegisterCACertificate([]byte(in.CACertificate), active, auto, body)
	if errors.Is(err, registry.ErrExists) {
		return errorf(http.StatusConflict, "ResourceAlreadyExistsException", "The CA certificate is already registered")
	}
	if err != nil {
		return fromIdentity(err, "")
	}
	return writeJSON(c.w, struct {
		CertificateARN string `json:"certificateArn"`
		CertificateID  string `json:"certificateId"`
	}{rc.ARN, rc.ID})
}

// describeCACertificate serves DescribeCACertificate:
// GET /cacertificate/{caCertificateId}.
func (s *Server) describeCACertificate(c *call) error {
	id := c.labels["caCertificateId"]
	if err := checkCertificateID(id); err != nil {
		return err
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	ca, err := reg.DescribeCACertificate(id)
	if err != nil {
		return fromIdentity(err, "The CA certificate "+id+" does not exist.")
	}
	type validity struct {
		NotBefore epoch `json:"notBefore,omitzero"`
		NotAfter  epoch `json:"notAfter,omitzero"`
	}
	type description struct {
		CertificateARN         string   `json:"certificateArn"`
		CertificateID          string   `json:"certificateId"`
		Status                 string   `json:"status"`
		CertificatePEM         string   `json:"certificatePem"`
		OwnedBy                string   `json:"ownedBy"`
		CreationDate           epoch    `json:"creationDate,omitzero"`
		AutoRegistrationStatus string   `json:"autoRegistrationStatus"`
		LastModifiedDate       epoch    `json:"lastModifiedDate,omitzero"`
		CustomerVersion        int      `json:"customerVersion"`
		GenerationID           string   `json:"generationId"`
		Validity               validity `json:"validity"`
		CertificateMode        string   `json:"certificateMode"`
	}
	type registrationConfig struct {
		TemplateBody string `json:"templateBody,omitempty"`
	}
	return writeJSON(c.w, struct {
		CertificateDescription description         `json:"certificateDescription"`
		RegistrationConfig     *registrationConfig `json:"registrationConfig,omitempty"`
	}{description{
		CertificateARN: ca.ARN, CertificateID: ca.ID, Status: ca.Status, CertificatePEM: ca.PEM,
		OwnedBy: s.o.Registry.Account(), CreationDate: epoch(ca.CreatedAt), AutoRegistrationStatus: ca.AutoRegistrationStatus,
		LastModifiedDate: epoch(ca.UpdatedAt), CustomerVersion: 1, GenerationID: generationID(ca.ID),
		Validity: validity{epoch(ca.NotBefore), epoch(ca.NotAfter)}, CertificateMode: "DEFAULT",
	}, func() *registrationConfig {
		if ca.TemplateBody == "" {
			return nil
		}
		return &registrationConfig{ca.TemplateBody}
	}()})
}

// registerCertificate serves RegisterCertificate:
// POST /certificate/register?setAsActive=.
func (s *Server) registerCertificate(c *call) error {
	active, err := boolParam(c.query, "setAsActive")
	if err != nil {
		return err
	}
	var in struct {
		CertificatePEM   string `json:"certificatePem"`
		CACertificatePEM string `json:"caCertificatePem"`
		Status           string `json:"status"`
	}
	if err := decodeBody(c, &in); err != nil {
		return err
	}
	if in.CertificatePEM == "" {
		return required("certificatePem")
	}
	status := in.Status
	switch {
	case status != "":
		if !slices.Contains(certStatuses, status) {
			return validation(status, "status", "Member must satisfy enum value set: ["+strings.Join(certStatuses, ", ")+"]")
		}
	case active:
		status = registry.StatusActive
	default:
		status = registry.StatusInactive
	}
	reg, err := s.identity()
	if err != nil {
		return err
	}
	if in.CACertificatePEM != "" {
		ca, err := pki.ParseCertificatePEM([]byte(in.CACertificatePEM))
		if err != nil {
			return errorf(http.StatusBadRequest, "CertificateValidationException", "The CA certificate is not a valid PEM certificate")
		}
		if _, err := reg.DescribeCACertificate(pki.CertificateID(ca.Raw)); err != nil {
			return errorf(http.StatusBadRequest, "CertificateValidationException", "The CA certificate is not registered")
		}
	}
	cert, err := reg.RegisterCertificateWithCA([]byte(in.CertificatePEM), status)
	if errors.Is(err, registry.ErrExists) {
		return errorf(http.StatusConflict, "ResourceAlreadyExistsException", "The certificate is already provisioned or registered")
	}
	if errors.Is(err, registry.ErrInvalid) {
		return errorf(http.StatusBadRequest, "CertificateValidationException", "The certificate is not a valid PEM certificate")
	}
	if err != nil {
		return fromIdentity(err, "")
	}
	return writeJSON(c.w, struct {
		CertificateARN string `json:"certificateArn"`
		CertificateID  string `json:"certificateId"`
	}{cert.ARN, cert.ID})
}
