package provisioning

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
)

// JITRegistry is what just-in-time registration needs of the registry.
// *registry.Registry satisfies it.
type JITRegistry interface {
	IssuingCA(cert *x509.Certificate) (registry.CACertificate, error)
	RegisterCertificateWithCA(certPEM []byte, status string) (registry.Certificate, error)
	DescribeCertificate(id string) (registry.Certificate, error)
}

// JITP template parameters taken from the device certificate's subject
// (shared/spec/provisioning.md §4.1), plus CertificateIDParameter.
const (
	ParamCountry                    = "AWS::IoT::Certificate::Country"
	ParamOrganization               = "AWS::IoT::Certificate::Organization"
	ParamOrganizationalUnit         = "AWS::IoT::Certificate::OrganizationalUnit"
	ParamDistinguishedNameQualifier = "AWS::IoT::Certificate::DistinguishedNameQualifier"
	ParamStateName                  = "AWS::IoT::Certificate::StateName"
	ParamCommonName                 = "AWS::IoT::Certificate::CommonName"
	ParamSerialNumber               = "AWS::IoT::Certificate::SerialNumber"
)

// RegisteredEventTopic is where the JITR event for a CA goes:
// RegisteredEventTopic + caCertificateId.
const RegisteredEventTopic = "$aws/events/certificates/registered/"

// RegisteredEvent is the payload of the JITR event
// (shared/spec/provisioning.md §7).
type RegisteredEvent struct {
	CertificateID                    string `json:"certificateId"`
	CACertificateID                  string `json:"caCertificateId"`
	Timestamp                        int64  `json:"timestamp"` // epoch milliseconds
	CertificateStatus                string `json:"certificateStatus"`
	AWSAccountID                     string `json:"awsAccountId"`
	CertificateRegistrationTimestamp string `json:"certificateRegistrationTimestamp"` // epoch milliseconds, as a string
}

// oidDNQualifier is X.520 dnQualifier, which pkix.Name does not decode.
var oidDNQualifier = []int{2, 5, 4, 46}

// SubjectParameters returns the JITP parameters a certificate's subject
// supplies: only the attributes it has (a template that declares one the
// certificate lacks then fails, as on AWS), and never
// CertificateIDParameter.
func SubjectParameters(cert *x509.Certificate) map[string]string {
	s := cert.Subject
	out := map[string]string{}
	set := func(k string, v []string) {
		if len(v) > 0 && v[0] != "" {
			out[k] = v[0]
		}
	}
	set(ParamCountry, s.Country)
	set(ParamOrganization, s.Organization)
	set(ParamOrganizationalUnit, s.OrganizationalUnit)
	set(ParamStateName, s.Province)
	set(ParamCommonName, []string{s.CommonName})
	set(ParamSerialNumber, []string{s.SerialNumber})
	for _, a := range s.Names {
		if a.Type.Equal(oidDNQualifier) {
			if v, ok := a.Value.(string); ok {
				set(ParamDistinguishedNameQualifier, []string{v})
			}
		}
	}
	return out
}

// JIT is just-in-time registration and provisioning (JITR and JITP,
// shared/spec/provisioning.md §6-7), run by the broker on the CONNECT of a
// certificate it does not know (broker.Options.AutoRegister). For a
// certificate signed by a registered ACTIVE CA whose auto-registration is
// enabled, it registers the certificate as PENDING_ACTIVATION (or finds it
// so), publishes the registered event, and, when the CA has a template
// (JITP), evaluates it with the subject's parameters and applies it as
// RegisterThing does: thing, policies, attachments and the certificate's
// status (ACTIVE unless the template says otherwise). The connection that
// triggered it is refused either way; the device's next one succeeds once
// the certificate is ACTIVE.
type JIT struct {
	svc     *Service
	reg     JITRegistry
	publish func(topic string, payload []byte) error
	now     func() time.Time
	account string
}

// NewJIT returns a JIT that applies templates through svc (its registry,
// policies and logger) and publishes events with publish. now nil means
// time.Now.
func NewJIT(svc *Service, reg JITRegistry, publish func(topic string, payload []byte) error, now func() time.Time) *JIT {
	if now == nil {
		now = time.Now
	}
	return &JIT{svc: svc, reg: reg, publish: publish, now: now, account: svc.reg.Account()}
}

// Errors of Register, for callers that branch.
var (
	// ErrNotAutoRegistered: the certificate's CA is not registered, not
	// ACTIVE, or has auto-registration disabled; nothing was done.
	ErrNotAutoRegistered = errors.New("provisioning: certificate is not eligible for auto-registration")
	// ErrNotPending: the certificate is registered and not
	// PENDING_ACTIVATION (INACTIVE, REVOKED, ...); nothing was done.
	ErrNotPending = errors.New("provisioning: certificate is registered and not PENDING_ACTIVATION")
)

// AutoRegister is Register for broker.Options.AutoRegister: outcomes are
// logged (ineligible certificates at debug level), not returned.
func (j *JIT) AutoRegister(cert *x509.Certificate) {
	c, err := j.Register(cert)
	switch {
	case errors.Is(err, ErrNotAutoRegistered), errors.Is(err, ErrNotPending):
		j.svc.log.Debug("jit: certificate not auto-registered", "certificate_id", pki.CertificateID(cert.Raw), "err", err)
	case err != nil:
		j.svc.log.Warn("jit: auto-registration failed", "certificate_id", pki.CertificateID(cert.Raw), "err", err)
	default:
		j.svc.log.Info("jit: certificate auto-registered", "certificate_id", c.ID, "ca_certificate_id", c.CAID, "status", c.Status)
	}
}

// Register runs JITR (and JITP when the CA has a template) for cert and
// returns the certificate as it is afterwards. A template that fails
// leaves the certificate PENDING_ACTIVATION and returns the error (the
// event has been published by then).
func (j *JIT) Register(cert *x509.Certificate) (registry.Certificate, error) {
	ca, err := j.reg.IssuingCA(cert)
	if errors.Is(err, registry.ErrCertificateValidation) {
		return registry.Certificate{}, fmt.Errorf("jit: %w: %w", ErrNotAutoRegistered, err)
	}
	if err != nil {
		return registry.Certificate{}, fmt.Errorf("jit: issuing CA: %w", err)
	}
	if ca.AutoRegistrationStatus != registry.AutoRegistrationEnable {
		return registry.Certificate{}, fmt.Errorf("jit: CA %s: %w", ca.ID, ErrNotAutoRegistered)
	}
	id := pki.CertificateID(cert.Raw)
	c, err := j.reg.DescribeCertificate(id)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		c, err = j.reg.RegisterCertificateWithCA(certPEM, registry.StatusPendingActivation)
		if errors.Is(err, registry.ErrExists) { // a concurrent CONNECT registered it
			c, err = j.reg.DescribeCertificate(id)
		}
		if err != nil {
			return registry.Certificate{}, fmt.Errorf("jit: register certificate %s: %w", id, err)
		}
	case err != nil:
		return registry.Certificate{}, fmt.Errorf("jit: describe certificate %s: %w", id, err)
	}
	if c.Status != registry.StatusPendingActivation {
		return c, fmt.Errorf("jit: certificate %s is %s: %w", id, c.Status, ErrNotPending)
	}
	if err := j.event(c, ca.ID); err != nil {
		return c, err
	}
	if ca.TemplateBody == "" {
		return c, nil // JITR: a rule or a person activates it
	}
	params := SubjectParameters(cert)
	params[CertificateIDParameter] = c.ID
	res, err := Evaluate(ca.TemplateBody, params)
	if err != nil {
		return c, fmt.Errorf("jit: CA %s template: %w", ca.ID, err)
	}
	if err := j.svc.apply(res, c, ""); err != nil {
		return c, fmt.Errorf("jit: CA %s template: %w", ca.ID, err)
	}
	if c, err = j.reg.DescribeCertificate(id); err != nil {
		return registry.Certificate{}, fmt.Errorf("jit: describe certificate %s: %w", id, err)
	}
	return c, nil
}

func (j *JIT) event(c registry.Certificate, caID string) error {
	now := j.now().UnixMilli()
	b, err := json.Marshal(RegisteredEvent{
		CertificateID:                    c.ID,
		CACertificateID:                  caID,
		Timestamp:                        now,
		CertificateStatus:                c.Status,
		AWSAccountID:                     j.account,
		CertificateRegistrationTimestamp: strconv.FormatInt(c.CreatedAt.UnixMilli(), 10),
	})
	if err != nil {
		return fmt.Errorf("jit: encode event: %w", err)
	}
	if err := j.publish(RegisteredEventTopic+caID, b); err != nil {
		return fmt.Errorf("jit: publish event: %w", err)
	}
	return nil
}
