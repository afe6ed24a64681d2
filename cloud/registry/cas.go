package registry

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/store"
)

// caBucket holds registered CA certificates by id.
const caBucket = "registry.cacertificates"

// CA certificate auto-registration states, as AWS names them.
const (
	AutoRegistrationEnable  = "ENABLE"
	AutoRegistrationDisable = "DISABLE"
)

// ErrCertificateValidation: a certificate is not a CA certificate, or is
// not signed by a registered ACTIVE CA (AWS's
// CertificateValidationException).
var ErrCertificateValidation = errors.New("registry: certificate validation failed")

// CACertificate is a registered CA certificate. A CA with auto-registration
// enables JITR; one with a TemplateBody enables JITP.
type CACertificate struct {
	ID                     string    `json:"certificateId"`
	ARN                    string    `json:"certificateArn"`
	Status                 string    `json:"status"` // ACTIVE or INACTIVE
	PEM                    string    `json:"certificatePem"`
	AutoRegistrationStatus string    `json:"autoRegistrationStatus"`
	TemplateBody           string    `json:"templateBody,omitempty"`
	NotBefore              time.Time `json:"notBefore"`
	NotAfter               time.Time `json:"notAfter"`
	CreatedAt              time.Time `json:"creationDate"`
	UpdatedAt              time.Time `json:"lastModifiedDate"`
}

// RegistrationCode is this account's CA registration code: the common
// name AWS wants in the verification certificate of RegisterCACertificate.
// It is stable for a region and account.
func (r *Registry) RegistrationCode() string {
	sum := sha256.Sum256([]byte("iotsim registration code:" + r.region + ":" + r.account))
	return hex.EncodeToString(sum[:])
}

// RegisterCACertificate registers a CA certificate (ACTIVE if active, else
// INACTIVE). autoRegistration turns on just-in-time registration of the
// certificates it signs; templateBody, if set, is the JITP template. A PEM
// that is not a CA certificate gives ErrCertificateValidation (or
// ErrInvalid if it is not a certificate at all); a CA registered before
// ErrExists.
func (r *Registry) RegisterCACertificate(caPEM []byte, active bool, autoRegistration bool, templateBody string) (CACertificate, error) {
	cert, err := pki.ParseCertificatePEM(caPEM)
	if err != nil {
		return CACertificate{}, fmt.Errorf("register CA certificate: %w: %w", ErrInvalid, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return CACertificate{}, fmt.Errorf("register CA certificate: not a CA certificate (basic constraints): %w", ErrCertificateValidation)
	}
	id := pki.CertificateID(cert.Raw)
	now := r.now().UTC()
	c := CACertificate{
		ID:                     id,
		ARN:                    r.arn("cacert", id),
		Status:                 StatusInactive,
		PEM:                    string(pkiPEM(cert.Raw)),
		AutoRegistrationStatus: AutoRegistrationDisable,
		TemplateBody:           templateBody,
		NotBefore:              cert.NotBefore.UTC(),
		NotAfter:               cert.NotAfter.UTC(),
		CreatedAt:              now,
		UpdatedAt:              now,
	}
	if active {
		c.Status = StatusActive
	}
	if autoRegistration {
		c.AutoRegistrationStatus = AutoRegistrationEnable
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.db.Update(func(tx *store.Tx) error {
		if _, err := tx.Get(caBucket, id); err == nil {
			return fmt.Errorf("register CA certificate %s: %w", id, ErrExists)
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("register CA certificate %s: %w", id, err)
		}
		return putJSON(tx, caBucket, id, c)
	})
	if err != nil {
		return CACertificate{}, err
	}
	return c, nil
}

// DescribeCACertificate returns the CA certificate or ErrNotFound.
func (r *Registry) DescribeCACertificate(id string) (CACertificate, error) {
	if !certIDRE.MatchString(id) {
		return CACertificate{}, fmt.Errorf("describe CA certificate %q: %w", id, ErrNotFound)
	}
	var c CACertificate
	if err := r.db.GetJSON(caBucket, id, &c); err != nil {
		return CACertificate{}, fmt.Errorf("describe CA certificate %s: %w", id, notFound(err))
	}
	return c, nil
}

// ListCACertificates returns every registered CA certificate, ordered by id.
func (r *Registry) ListCACertificates() ([]CACertificate, error) {
	var out []CACertificate
	err := r.db.ForEach(caBucket, "", func(_ string, v []byte) error {
		var c CACertificate
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list CA certificates: %w", err)
	}
	return out, nil
}

// IssuingCA returns the registered ACTIVE CA that signed cert, or
// ErrCertificateValidation.
func (r *Registry) IssuingCA(cert *x509.Certificate) (CACertificate, error) {
	cas, err := r.ListCACertificates()
	if err != nil {
		return CACertificate{}, err
	}
	for _, ca := range cas {
		if ca.Status != StatusActive {
			continue
		}
		caCert, err := pki.ParseCertificatePEM([]byte(ca.PEM))
		if err != nil || !bytes.Equal(cert.RawIssuer, caCert.RawSubject) {
			continue
		}
		if cert.CheckSignatureFrom(caCert) == nil {
			return ca, nil
		}
	}
	return CACertificate{}, fmt.Errorf("certificate is not signed by a registered ACTIVE CA: %w", ErrCertificateValidation)
}

// RegisterCertificateWithCA registers a device certificate signed by a
// registered ACTIVE CA (AWS's RegisterCertificate), with the given status
// ("" means INACTIVE). The certificate's CAID names its CA. A certificate
// no such CA signed gives ErrCertificateValidation; bad PEM or status
// ErrInvalid; a certificate registered before ErrExists.
func (r *Registry) RegisterCertificateWithCA(certPEM []byte, status string) (Certificate, error) {
	c, err := r.newCertificate(certPEM, status)
	if err != nil {
		return Certificate{}, err
	}
	cert, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		return Certificate{}, fmt.Errorf("register certificate: %w: %w", ErrInvalid, err)
	}
	ca, err := r.IssuingCA(cert)
	if err != nil {
		return Certificate{}, fmt.Errorf("register certificate: %w", err)
	}
	c.CAID = ca.ID
	if err := r.Update(func(t *Txn) error { return t.putNewCertificate(c) }); err != nil {
		return Certificate{}, err
	}
	return c, nil
}
