package provisioning

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
)

// Registry is what the service needs of the thing and certificate
// registry. *registry.Registry satisfies it.
type Registry interface {
	Region() string
	Account() string
	DescribeProvisioningTemplate(name string) (registry.ProvisioningTemplate, error)
	RegisterCertificate(certPEM []byte, status string) (registry.Certificate, error)
	DescribeCertificate(id string) (registry.Certificate, error)
	SetCertificateStatus(id, status string) error
	DeleteCertificate(id string) error
	CreateThing(name, typeName string, attrs map[string]string) (registry.Thing, error)
	DescribeThing(name string) (registry.Thing, error)
	SetThingAttributes(name, typeName string, attrs map[string]string) (registry.Thing, error)
	AttachThingPrincipal(thing, certID string) error
	// Batch runs fn in one registry transaction, which concurrent callers
	// share (group commit): RegisterThing creates and attaches a device's
	// resources through it, all or nothing, and so does
	// CreateKeysAndCertificate/CreateCertificateFromCsr its certificate.
	Batch(fn func(tx *registry.Txn) error) error
}

// Policies is what the service needs of IoT policies and thing groups.
// RegistryPolicies adapts the registry.
type Policies interface {
	// CreatePolicy creates a policy; one that exists gives registry.ErrExists.
	CreatePolicy(name, document string) error
	// PolicyExists reports whether a policy exists.
	PolicyExists(name string) (bool, error)
	AttachPolicy(name, targetARN string) error
	// AddThingToThingGroup adds a thing to a group; an unknown group gives
	// registry.ErrNotFound.
	AddThingToThingGroup(group, thing string) error
}

// Issuer issues certificates for fleet provisioning. *pki.CA satisfies it
// through PKIIssuer.
type Issuer interface {
	// NewKeysAndCertificate makes a key pair (RSA 2048, as AWS's) and a
	// certificate for it.
	NewKeysAndCertificate(commonName string) (certPEM, keyPEM []byte, err error)
	// SignCSR issues a certificate for the CSR's public key.
	SignCSR(csr *x509.CertificateRequest) (certPEM []byte, err error)
}

// PKIIssuer adapts *pki.CA to Issuer. Certificates expire when AWS's do
// (pki.AWSNotAfter) and have the subject "AWS IoT Certificate".
type PKIIssuer struct{ CA *pki.CA }

// NewKeysAndCertificate implements Issuer with AWS's key type: RSA 2048.
func (p PKIIssuer) NewKeysAndCertificate(cn string) ([]byte, []byte, error) {
	return p.CA.CreateKeysAndCertificate(cn)
}

// SignCSR implements Issuer.
func (p PKIIssuer) SignCSR(csr *x509.CertificateRequest) ([]byte, error) {
	der, err := p.CA.IssueDevice(csr.PublicKey, csrSubject(csr), pki.AWSNotAfter)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// Responder sends a reply to the one client that made the request
// (broker.Broker.PublishTo).
type Responder func(clientID, topic string, payload []byte) error

// Options configure a Service.
type Options struct {
	// Policies, if nil, makes templates with policy resources or thing
	// groups fail with 500 InternalFailure. RegisterThing itself creates
	// and attaches policies through Registry.Batch, in the transaction
	// that creates the thing.
	Policies Policies
	// Hooks maps a template's pre-provisioning hook target ARN to a hook.
	// A target that is an http:// or https:// URL is called as a Webhook
	// unless Hooks names it. A template whose target is neither is refused
	// (403), as AWS refuses when the Lambda fails.
	Hooks map[string]Hook
	// HTTPClient for webhooks; nil means http.DefaultClient.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Service is AWS IoT fleet provisioning over MQTT: CreateKeysAndCertificate,
// CreateCertificateFromCsr and RegisterThing. It is safe for concurrent use.
type Service struct {
	reg     Registry
	issuer  Issuer
	respond Responder
	now     func() time.Time
	o       Options
	log     *slog.Logger
	tokens  tokens
	// parsed caches parsed template bodies by text (Parse is pure and a
	// *Template is only read by Evaluate), bounded by maxParsed.
	parsed      sync.Map // body -> *Template
	parsedCount atomic.Int64
}

// maxParsed bounds the parsed template cache; past it, it starts over.
const maxParsed = 256

// evaluate is Evaluate with the parsed template cached.
func (s *Service) evaluate(body string, params map[string]string) (Result, error) {
	if v, ok := s.parsed.Load(body); ok {
		return v.(*Template).Evaluate(params)
	}
	t, err := Parse(body)
	if err != nil {
		return Result{}, err
	}
	if _, loaded := s.parsed.LoadOrStore(body, t); !loaded && s.parsedCount.Add(1) > maxParsed {
		s.parsed.Clear()
		s.parsedCount.Store(0)
	}
	return t.Evaluate(params)
}

// New returns a Service. now nil means time.Now. It starts no goroutines.
func New(reg Registry, issuer Issuer, respond Responder, now func() time.Time, o Options) *Service {
	if now == nil {
		now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{reg: reg, issuer: issuer, respond: respond, now: now, o: o, log: log}
}

// Topic filters that HandleRequest serves; route both to it.
const (
	CertificatesFilter = "$aws/certificates/#"
	TemplatesFilter    = "$aws/provisioning-templates/#"
)

// Error is a rejection: the body of a …/rejected message.
type Error struct {
	StatusCode int
	Code       string
	Message    string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%d): %s", e.Code, e.StatusCode, e.Message) }

// Error codes (spec/provisioning.md §2.4).
const (
	CodeInvalidToken      = "InvalidCertificateOwnershipToken"
	CodeInvalidParameters = "InvalidParameters"
	CodeInvalidPayload    = "InvalidPayload"
	CodeAccessDenied      = "AccessDenied"
	CodeNotFound          = "ResourceNotFound"
	CodeConflict          = "ResourceConflict"
	CodeInternal          = "InternalFailure"
)

func reject(status int, code, format string, args ...any) *Error {
	return &Error{StatusCode: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// request is a parsed request topic.
type request struct {
	api      string // "create", "create-from-csr" or "provision"
	template string
	format   string
	base     string // the topic without the format: replies go to base/format/accepted|rejected
}

func parseTopic(topic string) (request, bool) {
	parts := strings.Split(topic, "/")
	switch {
	case len(parts) == 4 && parts[0] == "$aws" && parts[1] == "certificates" &&
		(parts[2] == "create" || parts[2] == "create-from-csr"):
		return request{api: parts[2], format: parts[3], base: strings.Join(parts[:3], "/")}, parts[3] == FormatJSON || parts[3] == FormatCBOR
	case len(parts) == 5 && parts[0] == "$aws" && parts[1] == "provisioning-templates" && parts[3] == "provision":
		return request{api: "provision", template: parts[2], format: parts[4], base: strings.Join(parts[:4], "/")}, parts[4] == FormatJSON || parts[4] == FormatCBOR
	}
	return request{}, false
}

// HandleRequest serves one device PUBLISH. It reports whether topic was a
// fleet provisioning request (replies, the service's own accepted/rejected
// topics, and other topics are not). The reply goes to the requesting
// client only. Route CertificatesFilter and TemplatesFilter here.
func (s *Service) HandleRequest(p *broker.Principal, topic string, payload []byte) bool {
	req, ok := parseTopic(topic)
	if !ok || p == nil {
		return false
	}
	defer s.sweep()
	var resp any
	var err error
	switch req.api {
	case "create":
		resp, err = s.createKeysAndCertificate(req, payload)
	case "create-from-csr":
		resp, err = s.createCertificateFromCSR(req, payload)
	default:
		resp, err = s.registerThing(context.Background(), p, req, payload)
	}
	if err == nil {
		s.reply(p.ClientID, req, "accepted", resp)
		return true
	}
	var e *Error
	if !errors.As(err, &e) {
		s.log.Error("fleet provisioning", "topic", topic, "client_id", p.ClientID, "err", err)
		e = reject(500, CodeInternal, "Internal failure.")
	}
	s.reply(p.ClientID, req, "rejected", errorResponse{StatusCode: e.StatusCode, ErrorCode: e.Code, ErrorMessage: e.Message})
	return true
}

func (s *Service) reply(clientID string, req request, outcome string, v any) {
	b, err := encode(req.format, v)
	if err != nil {
		s.log.Error("fleet provisioning: encode reply", "err", err)
		return
	}
	topic := req.base + "/" + req.format + "/" + outcome
	if err := s.respond(clientID, topic, b); err != nil {
		s.log.Warn("fleet provisioning: reply", "topic", topic, "client_id", clientID, "err", err)
	}
}

// sweep deletes certificates whose token expired before RegisterThing,
// provided they were never activated nor attached (spec §3 step 5).
func (s *Service) sweep() {
	for _, id := range s.tokens.expired(s.now()) {
		c, err := s.reg.DescribeCertificate(id)
		if err != nil || c.Status != registry.StatusPendingActivation || len(c.Things) > 0 {
			continue
		}
		if err := s.reg.DeleteCertificate(id); err != nil {
			s.log.Warn("fleet provisioning: delete expired certificate", "certificate_id", id, "err", err)
		}
	}
}

// issue registers certPEM as PENDING_ACTIVATION and returns a token for it.
func (s *Service) issue(p *broker.Principal, certPEM []byte) (registry.Certificate, string, error) {
	var c registry.Certificate
	err := s.reg.Batch(func(tx *registry.Txn) (err error) {
		c, err = tx.RegisterCertificate(certPEM, registry.StatusPendingActivation)
		return err
	})
	if err != nil {
		return registry.Certificate{}, "", fmt.Errorf("register certificate: %w", err)
	}
	tok := newToken()
	claim := ""
	if p != nil {
		claim = p.CertificateID
	}
	s.tokens.add(tok, &token{certID: c.ID, claimCertID: claim, issued: s.now()})
	return c, tok, nil
}

func (s *Service) createKeysAndCertificate(req request, payload []byte) (any, error) {
	var ignored map[string]any
	if err := decode(req.format, payload, &ignored); err != nil {
		return nil, reject(400, CodeInvalidPayload, "The payload is not valid %s.", strings.ToUpper(req.format))
	}
	certPEM, keyPEM, err := s.issuer.NewKeysAndCertificate("")
	if err != nil {
		return nil, fmt.Errorf("create keys and certificate: %w", err)
	}
	c, tok, err := s.issue(nil, certPEM)
	if err != nil {
		return nil, err
	}
	return createResponse{CertificateID: c.ID, CertificatePEM: c.PEM, PrivateKey: string(keyPEM), Token: tok}, nil
}

// maxCSRLen bounds a CSR (a CSR for an RSA 4096 key is under 2 KB).
const maxCSRLen = 16 << 10

func (s *Service) createCertificateFromCSR(req request, payload []byte) (any, error) {
	var in createCSRRequest
	if err := decode(req.format, payload, &in); err != nil {
		return nil, reject(400, CodeInvalidPayload, "The payload is not valid %s.", strings.ToUpper(req.format))
	}
	if strings.TrimSpace(in.CSR) == "" {
		return nil, reject(400, CodeInvalidParameters, "Certificate signing request cannot be empty.")
	}
	csr, err := parseCSR(in.CSR)
	if err != nil {
		return nil, reject(400, CodeInvalidParameters, "The certificate signing request is not valid: %v.", err)
	}
	certPEM, err := s.issuer.SignCSR(csr)
	if err != nil {
		if errors.Is(err, pki.ErrUnsupportedKey) {
			return nil, reject(400, CodeInvalidParameters, "The certificate signing request's key type is not supported.")
		}
		return nil, fmt.Errorf("sign csr: %w", err)
	}
	c, tok, err := s.issue(nil, certPEM)
	if err != nil {
		return nil, err
	}
	return createResponse{CertificateID: c.ID, CertificatePEM: c.PEM, Token: tok}, nil
}

// parseCSR parses and verifies a PEM CSR.
func parseCSR(s string) (*x509.CertificateRequest, error) {
	if len(s) > maxCSRLen {
		return nil, errors.New("too long")
	}
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
		return nil, errors.New("no CERTIFICATE REQUEST PEM block")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, errors.New("cannot parse it")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errors.New("bad signature")
	}
	return csr, nil
}

// csrSubject keeps the CSR's subject, defaulting the common name as AWS
// names its certificates.
func csrSubject(csr *x509.CertificateRequest) (sub pkix.Name) {
	sub = csr.Subject
	sub.ExtraNames = nil
	if sub.CommonName == "" {
		sub.CommonName = "AWS IoT Certificate"
	}
	return sub
}

// takeToken reserves a token for one RegisterThing. done must be called
// with the outcome: a success consumes it, a failure releases it.
func (s *Service) takeToken(p *broker.Principal, tok string, params map[string]string) (*token, *registerResponse, error) {
	if tok == "" {
		return nil, nil, reject(400, CodeInvalidToken, "Certificate ownership token cannot be empty.")
	}
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	t, ok := s.tokens.m[tok]
	if !ok || t.claimCertID != "" && t.claimCertID != p.CertificateID {
		return nil, nil, reject(400, CodeInvalidToken, "Certificate ownership token is invalid.")
	}
	if t.used {
		// An identical retry (the accepted reply was lost, or the device
		// restarted before it saved it) gets the same answer; anything else
		// is a reuse.
		if maps.Equal(t.params, params) {
			r := t.response
			return nil, &r, nil
		}
		return nil, nil, reject(400, CodeInvalidToken, "Certificate ownership token has already been used.")
	}
	if s.now().Sub(t.issued) >= TokenLifetime {
		return nil, nil, reject(400, CodeInvalidToken, "Certificate ownership token has expired.")
	}
	if t.busy {
		return nil, nil, reject(409, CodeConflict, "A RegisterThing request with this certificate ownership token is in progress.")
	}
	t.busy = true
	return t, nil, nil
}

func (s *Service) releaseToken(t *token, params map[string]string, resp *registerResponse) {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	t.busy = false
	if resp != nil {
		t.used, t.params, t.response = true, maps.Clone(params), *resp
	}
}

func (s *Service) registerThing(ctx context.Context, p *broker.Principal, req request, payload []byte) (any, error) {
	var in registerRequest
	if err := decode(req.format, payload, &in); err != nil {
		return nil, reject(400, CodeInvalidPayload, "The payload is not valid %s.", strings.ToUpper(req.format))
	}
	if !registry.ValidTemplateName(req.template) {
		return nil, reject(404, CodeNotFound, "Template %s not found.", truncate(req.template, 64))
	}
	tpl, err := s.reg.DescribeProvisioningTemplate(req.template)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, reject(404, CodeNotFound, "Template %s not found.", req.template)
	case err != nil:
		return nil, fmt.Errorf("describe template: %w", err)
	case tpl.Type == registry.TemplateTypeJITP:
		return nil, reject(400, CodeInvalidParameters, "Template %s is a JITP template.", req.template)
	case !tpl.Enabled:
		return nil, reject(404, CodeNotFound, "Template %s is disabled.", req.template)
	}
	if in.Parameters == nil {
		in.Parameters = map[string]string{}
	}
	t, replay, err := s.takeToken(p, in.Token, in.Parameters)
	if err != nil {
		return nil, err
	}
	if replay != nil {
		return *replay, nil
	}
	var resp *registerResponse
	defer func() { s.releaseToken(t, in.Parameters, resp) }()
	r, err := s.register(ctx, p, tpl, t, in.Parameters)
	if err != nil {
		return nil, err
	}
	resp = &r
	return r, nil
}

func (s *Service) register(ctx context.Context, p *broker.Principal, tpl registry.ProvisioningTemplate, t *token, in map[string]string) (registerResponse, error) {
	cert, err := s.reg.DescribeCertificate(t.certID)
	if err != nil {
		return registerResponse{}, reject(400, CodeInvalidToken, "Certificate ownership token is invalid: its certificate is gone.")
	}
	params := maps.Clone(in)
	guard := ""
	if tpl.Hook != nil && IsTakeoverGuard(tpl.Hook.TargetARN) {
		// iotsim's built-in check runs in the transaction that attaches
		// the certificate, on the thing name the template resolves.
		guard = p.CertificateID
	} else if tpl.Hook != nil {
		out, err := s.callHook(ctx, tpl, p, cert, params)
		if err != nil {
			s.log.Info("fleet provisioning: refused by the pre-provisioning hook", "template", tpl.Name, "err", err)
			return registerResponse{}, reject(403, CodeAccessDenied, "Refused by the pre-provisioning hook.")
		}
		maps.Copy(params, out.ParameterOverrides)
	}
	params[CertificateIDParameter] = cert.ID
	res, err := s.evaluate(tpl.Body, params)
	if err != nil {
		return registerResponse{}, reject(400, CodeInvalidParameters, "%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), ErrInvalidParameters.Error()+": "), ErrInvalidTemplate.Error()+": "))
	}
	if err := s.apply(res, cert, guard); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == CodeAccessDenied {
			s.log.Warn("fleet provisioning: RegisterThing refused by the pre-provisioning check",
				"template", tpl.Name, "client_id", p.ClientID, "requester_certificate_id", p.CertificateID, "reason", e.Message)
		}
		return registerResponse{}, err
	}
	out := registerResponse{DeviceConfiguration: res.DeviceConfig}
	if out.DeviceConfiguration == nil {
		out.DeviceConfiguration = map[string]string{}
	}
	if res.Thing != nil {
		out.ThingName = res.Thing.ThingName
	}
	return out, nil
}

func (s *Service) callHook(ctx context.Context, tpl registry.ProvisioningTemplate, p *broker.Principal, cert registry.Certificate, params map[string]string) (HookOutput, error) {
	h, ok := s.o.Hooks[tpl.Hook.TargetARN]
	if !ok {
		if !strings.HasPrefix(tpl.Hook.TargetARN, "http://") && !strings.HasPrefix(tpl.Hook.TargetARN, "https://") {
			return HookOutput{}, fmt.Errorf("no hook for target %s", tpl.Hook.TargetARN)
		}
		h = Webhook(tpl.Hook.TargetARN, s.o.HTTPClient)
	}
	ctx, cancel := context.WithTimeout(ctx, HookTimeout)
	defer cancel()
	out, err := h(ctx, HookInput{
		ClaimCertificateID: p.CertificateID,
		CertificateID:      cert.ID,
		CertificatePEM:     cert.PEM,
		TemplateARN:        tpl.ARN,
		ClientID:           p.ClientID,
		Parameters:         maps.Clone(params),
	})
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		return HookOutput{}, err
	}
	if !out.AllowProvisioning {
		return HookOutput{}, ErrHookRefused
	}
	return out, nil
}

// apply creates or updates the template's resources for cert, in this
// order: policies, thing (and groups), attachments, certificate status. It
// is one registry transaction: a step that fails leaves nothing of the
// others behind, and the device's resources cost one commit, shared with
// the devices being provisioned at the same time. guard, if not empty, is
// the certificate id of the requesting connection: the takeover check
// (refuseTakeover) runs first, in the same transaction.
func (s *Service) apply(res Result, cert registry.Certificate, guard string) error {
	if c := res.Certificate; c != nil {
		if c.CertificateID != cert.ID {
			return reject(400, CodeInvalidParameters, "The certificate resource must be {\"Ref\": \"%s\"}.", CertificateIDParameter)
		}
	}
	needPolicies := len(res.Policies) > 0 || res.Thing != nil && len(res.Thing.ThingGroups) > 0
	if needPolicies && s.o.Policies == nil {
		return errors.New("policies and thing groups are not available")
	}
	return s.reg.Batch(func(tx *registry.Txn) error {
		if guard != "" && res.Thing != nil {
			if err := refuseTakeover(tx, res.Thing.ThingName, cert.ID, guard); err != nil {
				return err
			}
		}
		return applyIn(tx, res, cert)
	})
}

func applyIn(tx *registry.Txn, res Result, cert registry.Certificate) error {
	for _, pol := range res.Policies {
		if pol.Document == "" {
			_, err := tx.GetPolicy(pol.Name)
			if errors.Is(err, registry.ErrNotFound) {
				return reject(400, CodeInvalidParameters, "Policy %s does not exist.", pol.Name)
			}
			if err != nil {
				return fmt.Errorf("policy %s: %w", pol.Name, err)
			}
			continue
		}
		if _, err := tx.CreatePolicy(pol.Name, pol.Document); err != nil && !errors.Is(err, registry.ErrExists) {
			if errors.Is(err, registry.ErrInvalid) || errors.Is(err, registry.ErrMalformedPolicy) {
				return reject(400, CodeInvalidParameters, "Policy %s: %v.", pol.Name, err)
			}
			return fmt.Errorf("create policy %s: %w", pol.Name, err)
		}
	}
	if th := res.Thing; th != nil {
		if err := applyThing(tx, th); err != nil {
			return err
		}
		if err := tx.AttachThingPrincipal(th.ThingName, cert.ID); err != nil {
			return fmt.Errorf("attach certificate to %s: %w", th.ThingName, err)
		}
	}
	for _, pol := range res.Policies {
		if err := tx.AttachPolicy(pol.Name, cert.ARN); err != nil {
			return fmt.Errorf("attach policy %s: %w", pol.Name, err)
		}
	}
	status := registry.StatusActive
	if c := res.Certificate; c != nil && c.Status != "" {
		status = c.Status
	}
	if err := tx.SetCertificateStatus(cert.ID, status); err != nil {
		return fmt.Errorf("set certificate status: %w", err)
	}
	return nil
}

func applyThing(tx *registry.Txn, th *ThingResource) error {
	existing, err := tx.DescribeThing(th.ThingName)
	if errors.Is(err, registry.ErrNotFound) {
		if _, err := tx.CreateThing(th.ThingName, th.ThingTypeName, th.AttributePayload); err != nil {
			if errors.Is(err, registry.ErrInvalid) {
				return reject(400, CodeInvalidParameters, "Thing %s: %v.", th.ThingName, err)
			}
			return fmt.Errorf("create thing %s: %w", th.ThingName, err)
		}
		return addGroups(tx, th, th.ThingGroups)
	}
	if err != nil {
		return fmt.Errorf("describe thing %s: %w", th.ThingName, err)
	}
	attrs, typ := existing.Attributes, existing.TypeName
	set := map[string]bool{
		"AttributePayload": th.AttributePayload != nil,
		"ThingTypeName":    th.ThingTypeName != "",
		"ThingGroups":      th.ThingGroups != nil,
		"BillingGroup":     th.BillingGroup != "",
	}
	for _, prop := range slices.Sorted(maps.Keys(set)) {
		if set[prop] && th.Overrides[prop] == OverrideFail {
			return reject(409, CodeConflict, "Thing %s exists and its %s override is FAIL.", th.ThingName, prop)
		}
	}
	switch th.Overrides["AttributePayload"] {
	case OverrideReplace:
		attrs = th.AttributePayload
	case OverrideMerge:
		attrs = maps.Clone(attrs)
		if attrs == nil {
			attrs = map[string]string{}
		}
		maps.Copy(attrs, th.AttributePayload)
	}
	if th.Overrides["ThingTypeName"] == OverrideReplace {
		typ = th.ThingTypeName
	}
	if !maps.Equal(attrs, existing.Attributes) || typ != existing.TypeName {
		if _, err := tx.SetThingAttributes(th.ThingName, typ, attrs); err != nil {
			if errors.Is(err, registry.ErrInvalid) {
				return reject(400, CodeInvalidParameters, "Thing %s: %v.", th.ThingName, err)
			}
			return fmt.Errorf("update thing %s: %w", th.ThingName, err)
		}
	}
	switch th.Overrides["ThingGroups"] {
	case OverrideReplace, OverrideMerge:
		// Membership is only ever added here: the registry keeps no list
		// to replace, so REPLACE behaves as MERGE.
		return addGroups(tx, th, th.ThingGroups)
	}
	return nil
}

func addGroups(tx *registry.Txn, th *ThingResource, groups []string) error {
	for _, g := range groups {
		if err := tx.AddThingToThingGroup(g, th.ThingName); err != nil {
			if errors.Is(err, registry.ErrNotFound) {
				return reject(400, CodeInvalidParameters, "Thing group %s does not exist.", g)
			}
			return fmt.Errorf("add %s to thing group %s: %w", th.ThingName, g, err)
		}
	}
	return nil
}
