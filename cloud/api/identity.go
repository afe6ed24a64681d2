package api

import (
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
	mapPolicy := func(in *policyIn, err error) error { return fromIdentity(err, policyNotFound(in.Name)) }
	mapPolicyTarget := func(in *policyTargetIn, err error) error {
		return fromIdentity(err, "The policy "+in.Name+" or the target "+truncate(in.Target, 256)+" cannot be found.")
	}
	routes = append(routes,
		op[createPolicyIn]{"CreatePolicy", svcControl, http.MethodPost, "/policies/{policyName}", (*Server).createPolicy,
			func(_ *createPolicyIn, err error) error { return fromIdentity(err, "") }}.route(),
		op[policyIn]{"GetPolicy", svcControl, http.MethodGet, "/policies/{policyName}", (*Server).getPolicy, mapPolicy}.route(),
		op[listPoliciesIn]{"ListPolicies", svcControl, http.MethodGet, "/policies", (*Server).listPolicies,
			func(_ *listPoliciesIn, err error) error { return fromIdentity(err, "") }}.route(),
		op[policyTargetIn]{"AttachPolicy", svcControl, http.MethodPut, "/target-policies/{policyName}",
			func(s *Server, _ *call, in *policyTargetIn) (any, error) { return s.policyTarget(in, true) }, mapPolicyTarget}.route(),
		op[policyTargetIn]{"DetachPolicy", svcControl, http.MethodPost, "/target-policies/{policyName}",
			func(s *Server, _ *call, in *policyTargetIn) (any, error) { return s.policyTarget(in, false) }, mapPolicyTarget}.route(),
		op[attachedPoliciesIn]{"ListAttachedPolicies", svcControl, http.MethodPost, "/attached-policies/{target}", (*Server).listAttachedPolicies,
			func(in *attachedPoliciesIn, err error) error {
				return fromIdentity(err, "The target "+truncate(in.Target, 256)+" cannot be found.")
			}}.route(),
		op[thingGroupMemberIn]{"AddThingToThingGroup", svcControl, http.MethodPut, "/thing-groups/addThingToThingGroup", (*Server).addThingToThingGroup,
			func(in *thingGroupMemberIn, err error) error {
				if errors.Is(err, registry.ErrInvalid) {
					return invalid("Thing %s cannot be added to more than %d thing groups", in.thing, registry.MaxGroupsPerThing)
				}
				return fromIdentity(err, "The thing "+in.thing+" or the thing group "+in.group+" cannot be found.")
			}}.route(),
		op[createThingGroupIn]{"CreateThingGroup", svcControl, http.MethodPost, "/thing-groups/{thingGroupName}", (*Server).createThingGroup,
			func(_ *createThingGroupIn, err error) error { return fromIdentity(err, "") }}.route(),
		op[thingGroupIn]{"DescribeThingGroup", svcControl, http.MethodGet, "/thing-groups/{thingGroupName}", (*Server).describeThingGroup,
			func(in *thingGroupIn, err error) error {
				return fromIdentity(err, "Thing Group "+in.Name+" does not exist")
			}}.route(),
		op[thingIn]{"ListThingGroupsForThing", svcControl, http.MethodGet, "/things/{thingName}/thing-groups", (*Server).listThingGroupsForThing,
			func(in *thingIn, err error) error { return fromIdentity(err, thingNotFound(in.Thing)) }}.route(),
		op[struct{}]{"GetRegistrationCode", svcControl, http.MethodGet, "/registrationcode", (*Server).getRegistrationCode, nil}.route(),
		op[registerCAIn]{"RegisterCACertificate", svcControl, http.MethodPost, "/cacertificate", (*Server).registerCACertificate,
			func(in *registerCAIn, err error) error { return fromIdentity(err, "") }}.route(),
		op[caIn]{"DescribeCACertificate", svcControl, http.MethodGet, "/cacertificate/{caCertificateId}", (*Server).describeCACertificate,
			func(in *caIn, err error) error {
				return fromIdentity(err, "The CA certificate "+in.ID+" does not exist.")
			}}.route(),
		op[registerCertificateIn]{"RegisterCertificate", svcControl, http.MethodPost, "/certificate/register", (*Server).registerCertificate,
			func(_ *registerCertificateIn, err error) error { return fromIdentity(err, "") }}.route(),
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

type createPolicyIn struct {
	Name           string  `uri:"policyName" check:"policy"`
	PolicyDocument *string `json:"policyDocument"`
}

func (in *createPolicyIn) validate() error {
	if in.PolicyDocument == nil {
		return required("policyDocument")
	}
	return nil
}

// createPolicy serves CreatePolicy: POST /policies/{policyName}.
func (s *Server) createPolicy(_ *call, in *createPolicyIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	p, err := reg.CreatePolicy(in.Name, *in.PolicyDocument)
	if errors.Is(err, registry.ErrExists) {
		return nil, errorf(http.StatusConflict, "ResourceAlreadyExistsException", "Policy cannot be created - name already exists (name=%s)", in.Name)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		PolicyName      string `json:"policyName"`
		PolicyARN       string `json:"policyArn"`
		PolicyDocument  string `json:"policyDocument"`
		PolicyVersionID string `json:"policyVersionId"`
	}{p.Name, p.ARN, p.Document, p.DefaultVersionID}, nil
}

// policyIn is the input of operations on one policy.
type policyIn struct {
	Name string `uri:"policyName" check:"policy"`
}

// getPolicy serves GetPolicy: GET /policies/{policyName}.
func (s *Server) getPolicy(_ *call, in *policyIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	p, err := reg.GetPolicy(in.Name)
	if err != nil {
		return nil, err
	}
	return struct {
		PolicyName       string `json:"policyName"`
		PolicyARN        string `json:"policyArn"`
		PolicyDocument   string `json:"policyDocument"`
		DefaultVersionID string `json:"defaultVersionId"`
		CreationDate     epoch  `json:"creationDate,omitzero"`
		LastModifiedDate epoch  `json:"lastModifiedDate,omitzero"`
		GenerationID     string `json:"generationId"`
	}{p.Name, p.ARN, p.Document, p.DefaultVersionID, epoch(p.CreatedAt), epoch(p.CreatedAt), generationID(p.ARN)}, nil
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

type listPoliciesIn struct {
	Ascending *bool `query:"isAscendingOrder"`
}

// listPolicies serves ListPolicies: GET /policies, paged by marker/pageSize,
// ascending by name unless isAscendingOrder=false.
func (s *Server) listPolicies(c *call, in *listPoliciesIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	ps, err := reg.ListPolicies()
	if err != nil {
		return nil, err
	}
	if in.Ascending != nil && !*in.Ascending {
		ps = slices.Clone(ps)
		slices.Reverse(ps)
	}
	start, end, next, err := page(len(ps), c.query, "marker", "pageSize", 25, 250)
	if err != nil {
		return nil, err
	}
	return struct {
		Policies   []policySummary `json:"policies"`
		NextMarker string          `json:"nextMarker,omitempty"`
	}{policySummaries(ps[start:end]), next}, nil
}

type policyTargetIn struct {
	Name   string `uri:"policyName" check:"policy"`
	Target string `json:"target"`
}

func (in *policyTargetIn) validate() error {
	if in.Target == "" {
		return required("target")
	}
	return nil
}

// policyTarget serves AttachPolicy (PUT) and DetachPolicy (POST):
// /target-policies/{policyName}.
func (s *Server) policyTarget(in *policyTargetIn, attach bool) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	op := reg.DetachPolicy
	if attach {
		op = reg.AttachPolicy
	}
	return nil, op(in.Name, in.Target)
}

type attachedPoliciesIn struct {
	Target    string `uri:"target"`
	Recursive bool   `query:"recursive"`
}

// listAttachedPolicies serves ListAttachedPolicies:
// POST /attached-policies/{target}?recursive=&marker=&pageSize=.
func (s *Server) listAttachedPolicies(c *call, in *attachedPoliciesIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	ps, err := reg.AttachedPolicies(in.Target)
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(len(ps), c.query, "marker", "pageSize", 25, 250)
	if err != nil {
		return nil, err
	}
	return struct {
		Policies   []policySummary `json:"policies"`
		NextMarker string          `json:"nextMarker,omitempty"`
	}{policySummaries(ps[start:end]), next}, nil
}

type createThingGroupIn struct {
	Name                 string `uri:"thingGroupName" check:"thing"`
	ParentGroupName      string `json:"parentGroupName"`
	ThingGroupProperties *struct {
		ThingGroupDescription string `json:"thingGroupDescription"`
		AttributePayload      *struct {
			Attributes map[string]string `json:"attributes"`
		} `json:"attributePayload"`
	} `json:"thingGroupProperties"`
}

func (in *createThingGroupIn) attributes() map[string]string {
	if p := in.ThingGroupProperties; p != nil && p.AttributePayload != nil {
		return p.AttributePayload.Attributes
	}
	return nil
}

func (in *createThingGroupIn) validate() error {
	if in.ParentGroupName != "" {
		if err := checkThingName("parentGroupName", in.ParentGroupName); err != nil {
			return err
		}
		return invalid("Thing group hierarchies (parentGroupName) are not supported by this simulator")
	}
	for k, v := range in.attributes() {
		if err := checkAttribute(k, v); err != nil {
			return err
		}
	}
	return nil
}

// createThingGroup serves CreateThingGroup: POST /thing-groups/{thingGroupName}.
func (s *Server) createThingGroup(_ *call, in *createThingGroupIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	g, err := reg.CreateThingGroup(in.Name, in.attributes())
	if errors.Is(err, registry.ErrExists) {
		return nil, errorf(http.StatusConflict, "ResourceAlreadyExistsException", "Thing Group %s already exists with different tags", in.Name)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		ThingGroupName string `json:"thingGroupName"`
		ThingGroupARN  string `json:"thingGroupArn"`
		ThingGroupID   string `json:"thingGroupId"`
	}{g.Name, g.ARN, g.ID}, nil
}

type thingGroupIn struct {
	Name string `uri:"thingGroupName" check:"thing"`
}

// describeThingGroup serves DescribeThingGroup: GET /thing-groups/{thingGroupName}.
func (s *Server) describeThingGroup(_ *call, in *thingGroupIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	g, err := reg.DescribeThingGroup(in.Name)
	if err != nil {
		return nil, err
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
	return struct {
		ThingGroupName       string     `json:"thingGroupName"`
		ThingGroupID         string     `json:"thingGroupId"`
		ThingGroupARN        string     `json:"thingGroupArn"`
		Version              int64      `json:"version"`
		ThingGroupProperties properties `json:"thingGroupProperties"`
		ThingGroupMetadata   metadata   `json:"thingGroupMetadata"`
	}{g.Name, g.ID, g.ARN, g.Version, properties{attributePayload{nonNil(g.Attributes)}}, metadata{epoch(g.CreatedAt)}}, nil
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
func (s *Server) addThingToThingGroup(_ *call, in *thingGroupMemberIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	return nil, reg.AddThingToThingGroup(in.group, in.thing)
}

// listThingGroupsForThing serves ListThingGroupsForThing:
// GET /things/{thingName}/thing-groups.
func (s *Server) listThingGroupsForThing(c *call, in *thingIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	groups, err := reg.ThingGroupsOf(in.Thing)
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(len(groups), c.query, "nextToken", "maxResults", 25, 250)
	if err != nil {
		return nil, err
	}
	type nameAndARN struct {
		GroupName string `json:"groupName"`
		GroupARN  string `json:"groupArn"`
	}
	out := make([]nameAndARN, 0, end-start)
	for _, g := range groups[start:end] {
		out = append(out, nameAndARN{g, s.arn("thinggroup/" + g)})
	}
	return struct {
		ThingGroups []nameAndARN `json:"thingGroups"`
		NextToken   string       `json:"nextToken,omitempty"`
	}{out, next}, nil
}

// getRegistrationCode serves GetRegistrationCode: GET /registrationcode.
func (s *Server) getRegistrationCode(_ *call, _ *struct{}) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	return struct {
		RegistrationCode string `json:"registrationCode"`
	}{reg.RegistrationCode()}, nil
}

type templateLookup interface {
	DescribeProvisioningTemplate(name string) (registry.ProvisioningTemplate, error)
}

type registerCAIn struct {
	SetAsActive             bool   `query:"setAsActive"`
	AllowAutoRegistration   bool   `query:"allowAutoRegistration"`
	CACertificate           string `json:"caCertificate"`
	VerificationCertificate string `json:"verificationCertificate"`
	CertificateMode         string `json:"certificateMode"`
	RegistrationConfig      *struct {
		TemplateBody string `json:"templateBody"`
		TemplateName string `json:"templateName"`
		RoleARN      string `json:"roleArn"`
	} `json:"registrationConfig"`
}

func (in *registerCAIn) validate() error {
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
	return nil
}

// registerCACertificate serves RegisterCACertificate:
// POST /cacertificate?setAsActive=&allowAutoRegistration=.
func (s *Server) registerCACertificate(_ *call, in *registerCAIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	ca, err := pki.ParseCertificatePEM([]byte(in.CACertificate))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "CertificateValidationException", "The CA certificate is not a valid PEM certificate")
	}
	if in.VerificationCertificate != "" {
		v, err := pki.ParseCertificatePEM([]byte(in.VerificationCertificate))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "CertificateValidationException", "The verification certificate is not a valid PEM certificate")
		}
		if err := v.CheckSignatureFrom(ca); err != nil {
			return nil, errorf(http.StatusBadRequest, "CertificateValidationException", "The verification certificate is not signed by the CA certificate")
		}
		if v.Subject.CommonName != reg.RegistrationCode() {
			return nil, errorf(http.StatusBadRequest, "RegistrationCodeValidationException",
				"The verification certificate's common name is not this account's registration code")
		}
	}
	body := ""
	if rc := in.RegistrationConfig; rc != nil {
		body = rc.TemplateBody
		if rc.TemplateName != "" {
			tl, ok := s.o.Registry.(templateLookup)
			if !ok {
				return nil, internal("Provisioning templates")
			}
			t, err := tl.DescribeProvisioningTemplate(rc.TemplateName)
			if err != nil {
				return nil, fromIdentity(err, "The provisioning template "+rc.TemplateName+" cannot be found.")
			}
			body = t.Body
		}
	}
	rc, err := reg.RegisterCACertificate([]byte(in.CACertificate), in.SetAsActive, in.AllowAutoRegistration, body)
	if errors.Is(err, registry.ErrExists) {
		return nil, errorf(http.StatusConflict, "ResourceAlreadyExistsException", "The CA certificate is already registered")
	}
	if err != nil {
		return nil, err
	}
	return struct {
		CertificateARN string `json:"certificateArn"`
		CertificateID  string `json:"certificateId"`
	}{rc.ARN, rc.ID}, nil
}

type caIn struct {
	ID string `uri:"caCertificateId" check:"cert"`
}

// describeCACertificate serves DescribeCACertificate:
// GET /cacertificate/{caCertificateId}.
func (s *Server) describeCACertificate(_ *call, in *caIn) (any, error) {
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	ca, err := reg.DescribeCACertificate(in.ID)
	if err != nil {
		return nil, err
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
	return struct {
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
	}()}, nil
}

type registerCertificateIn struct {
	SetAsActive      bool   `query:"setAsActive"`
	CertificatePEM   string `json:"certificatePem"`
	CACertificatePEM string `json:"caCertificatePem"`
	Status           string `json:"status"`
}

func (in *registerCertificateIn) validate() error {
	if in.CertificatePEM == "" {
		return required("certificatePem")
	}
	if in.Status != "" && !slices.Contains(certStatuses, in.Status) {
		return validation(in.Status, "status", "Member must satisfy enum value set: ["+strings.Join(certStatuses, ", ")+"]")
	}
	return nil
}

// registerCertificate serves RegisterCertificate:
// POST /certificate/register?setAsActive=.
func (s *Server) registerCertificate(_ *call, in *registerCertificateIn) (any, error) {
	status := in.Status
	switch {
	case status != "":
	case in.SetAsActive:
		status = registry.StatusActive
	default:
		status = registry.StatusInactive
	}
	reg, err := s.identity()
	if err != nil {
		return nil, err
	}
	if in.CACertificatePEM != "" {
		ca, err := pki.ParseCertificatePEM([]byte(in.CACertificatePEM))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "CertificateValidationException", "The CA certificate is not a valid PEM certificate")
		}
		if _, err := reg.DescribeCACertificate(pki.CertificateID(ca.Raw)); err != nil {
			return nil, errorf(http.StatusBadRequest, "CertificateValidationException", "The CA certificate is not registered")
		}
	}
	cert, err := reg.RegisterCertificateWithCA([]byte(in.CertificatePEM), status)
	if errors.Is(err, registry.ErrExists) {
		return nil, errorf(http.StatusConflict, "ResourceAlreadyExistsException", "The certificate is already provisioned or registered")
	}
	if errors.Is(err, registry.ErrInvalid) {
		return nil, errorf(http.StatusBadRequest, "CertificateValidationException", "The certificate is not a valid PEM certificate")
	}
	if err != nil {
		return nil, err
	}
	return struct {
		CertificateARN string `json:"certificateArn"`
		CertificateID  string `json:"certificateId"`
	}{cert.ARN, cert.ID}, nil
}
