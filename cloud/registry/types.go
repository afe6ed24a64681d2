package registry

import (
	"errors"
	"time"
)

// Certificate statuses, as AWS names them.
const (
	StatusActive            = "ACTIVE"
	StatusInactive          = "INACTIVE"
	StatusRevoked           = "REVOKED"
	StatusPendingActivation = "PENDING_ACTIVATION"
	StatusPendingTransfer   = "PENDING_TRANSFER"
	StatusRegisterInactive  = "REGISTER_INACTIVE"
)

var (
	// ErrNotFound: no thing or certificate with that name or id.
	ErrNotFound = errors.New("registry: not found")
	// ErrExists: a thing with that name exists with other attributes, or the
	// certificate is already registered.
	ErrExists = errors.New("registry: already exists")
	// ErrInvalid: a name, id or status does not satisfy AWS's rules.
	ErrInvalid = errors.New("registry: invalid request")
	// ErrCertificateState: the status change is not allowed (e.g. REVOKED to ACTIVE).
	ErrCertificateState = errors.New("registry: certificate state does not allow this")
)

// Thing is a registry entry.
type Thing struct {
	Name          string            `json:"thingName"`
	ID            string            `json:"thingId"`
	ARN           string            `json:"thingArn"`
	TypeName      string            `json:"thingTypeName,omitempty"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	Version       int64             `json:"version"`
	Principals    []string          `json:"principals,omitempty"` // certificate ids attached
	CreatedAt     time.Time         `json:"createdAt"`
	LastUpdatedAt time.Time         `json:"lastUpdatedAt"`
}

// Certificate is a registered device certificate.
type Certificate struct {
	ID        string    `json:"certificateId"` // lowercase hex SHA-256 of DER
	ARN       string    `json:"certificateArn"`
	Status    string    `json:"status"`
	PEM       string    `json:"certificatePem"`
	CAID      string    `json:"caCertificateId,omitempty"`
	Things    []string  `json:"things,omitempty"` // thing names this certificate is attached to
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	CreatedAt time.Time `json:"creationDate"`
	UpdatedAt time.Time `json:"lastModifiedDate"`
}
