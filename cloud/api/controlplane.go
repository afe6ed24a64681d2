package api

import (
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/iotagent/iotagent/cloud/registry"
)

// certCommonName is the subject CN of certificates made by
// CreateKeysAndCertificate, as AWS names them.
const certCommonName = "AWS IoT Certificate"

func init() {
	mapThing := func(in *thingIn, err error) error { return fromRegistry(err, thingNotFound(in.Thing)) }
	mapCert := func(in *certIn, err error) error { return fromRegistry(err, certNotFound(in.ID)) }
	mapPrincipal := func(in *thingPrincipalIn, err error) error {
		return fromRegistry(err, "The thing "+in.Thing+" or the certificate "+in.certID+" cannot be found.")
	}
	routes = append(routes,
		op[describeEndpointIn]{"DescribeEndpoint", svcControl, http.MethodGet, "/endpoint", (*Server).describeEndpoint, nil}.route(),
		op[listThingsIn]{"ListThings", svcControl, http.MethodGet, "/things", (*Server).listThings,
			func(_ *listThingsIn, err error) error { return fromRegistry(err, "") }}.route(),
		op[createThingIn]{"CreateThing", svcControl, http.MethodPost, "/things/{thingName}", (*Server).createThing,
			func(in *createThingIn, err error) error {
				return fromRegistry(err, "Thing type "+in.ThingTypeName+" cannot be found.")
			}}.route(),
		op[thingIn]{"DescribeThing", svcControl, http.MethodGet, "/things/{thingName}", (*Server).describeThing, mapThing}.route(),
		op[deleteThingIn]{"DeleteThing", svcControl, http.MethodDelete, "/things/{thingName}", (*Server).deleteThing,
			func(in *deleteThingIn, err error) error { return fromRegistry(err, thingNotFound(in.Thing)) }}.route(),
		op[thingPrincipalIn]{"AttachThingPrincipal", svcControl, http.MethodPut, "/things/{thingName}/principals",
			func(s *Server, _ *call, in *thingPrincipalIn) (any, error) { return s.thingPrincipal(in, true) }, mapPrincipal}.route(),
		op[thingPrincipalIn]{"DetachThingPrincipal", svcControl, http.MethodDelete, "/things/{thingName}/principals",
			func(s *Server, _ *call, in *thingPrincipalIn) (any, error) { return s.thingPrincipal(in, false) }, mapPrincipal}.route(),
		op[thingIn]{"ListThingPrincipals", svcControl, http.MethodGet, "/things/{thingName}/principals", (*Server).listThingPrincipals, mapThing}.route(),
		op[createKeysIn]{"CreateKeysAndCertificate", svcControl, http.MethodPost, "/keys-and-certificate", (*Server).createKeysAndCertificate,
			func(_ *createKeysIn, err error) error { return fromRegistry(err, "") }}.route(),
		op[listCertificatesIn]{"ListCertificates", svcControl, http.MethodGet, "/certificates", (*Server).listCertificates,
			func(_ *listCertificatesIn, err error) error { return fromRegistry(err, "") }}.route(),
		op[certIn]{"DescribeCertificate", svcControl, http.MethodGet, "/certificates/{certificateId}", (*Server).describeCertificate, mapCert}.route(),
		op[certIn]{"UpdateCertificate", svcControl, http.MethodPut, "/certificates/{certificateId}", (*Server).updateCertificate, mapCert}.route(),
	)
}

func (s *Server) registry() (Registry, error) {
	if s.o.Registry == nil {
		return nil, internal("The registry")
	}
	return s.o.Registry, nil
}

func (s *Server) arn(resource string) string {
	return "arn:aws:iot:" + s.o.Registry.Region() + ":" + s.o.Registry.Account() + ":" + resource
}

func (s *Server) thingARN(t registry.Thing) string {
	if t.ARN != "" {
		return t.ARN
	}
	return s.arn("thing/" + t.Name)
}

func (s *Server) certARN(c registry.Certificate) string {
	if c.ARN != "" {
		return c.ARN
	}
	return s.arn("cert/" + c.ID)
}

func thingNotFound(name string) string { return "Thing " + name + " cannot be found." }

func certNotFound(id string) string { return "The certificate " + id + " does not exist." }

type describeEndpointIn struct {
	EndpointType string `query:"endpointType"`
}

func (in *describeEndpointIn) validate() error {
	switch in.EndpointType {
	case "", "iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs":
		return nil
	}
	return invalid("Endpoint type %s is not valid.", truncate(in.EndpointType, 128))
}

// describeEndpoint serves DescribeEndpoint: GET /endpoint?endpointType=.
func (s *Server) describeEndpoint(c *call, _ *describeEndpointIn) (any, error) {
	host := s.o.Endpoint
	if host == "" {
		host = c.r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	return struct {
		EndpointAddress string `json:"endpointAddress"`
	}{host}, nil
}

type thingAttribute struct {
	ThingName     string            `json:"thingName"`
	ThingTypeName string            `json:"thingTypeName,omitempty"`
	ThingARN      string            `json:"thingArn"`
	Attributes    map[string]string `json:"attributes"`
	Version       int64             `json:"version"`
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

type createThingIn struct {
	Thing            string `uri:"thingName" check:"thing"`
	ThingTypeName    string `json:"thingTypeName"`
	AttributePayload *struct {
		Attributes map[string]string `json:"attributes"`
		Merge      bool              `json:"merge"`
	} `json:"attributePayload"`
	BillingGroupName string `json:"billingGroupName"`
}

func (in *createThingIn) validate() error {
	if in.ThingTypeName != "" {
		if err := checkThingName("thingTypeName", in.ThingTypeName); err != nil {
			return err
		}
	}
	if in.BillingGroupName != "" {
		if err := checkThingName("billingGroupName", in.BillingGroupName); err != nil {
			return err
		}
		return errorf(http.StatusNotFound, "ResourceNotFoundException", "Billing group %s does not exist.", in.BillingGroupName)
	}
	if in.AttributePayload != nil {
		for k, v := range in.AttributePayload.Attributes {
			if err := checkAttribute(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// createThing serves CreateThing: POST /things/{thingName}.
func (s *Server) createThing(_ *call, in *createThingIn) (any, error) {
	var attrs map[string]string
	if in.AttributePayload != nil {
		attrs = in.AttributePayload.Attributes
	}
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	t, err := reg.CreateThing(in.Thing, in.ThingTypeName, attrs)
	if err != nil {
		return nil, err
	}
	return struct {
		ThingName string `json:"thingName"`
		ThingARN  string `json:"thingArn"`
		ThingID   string `json:"thingId"`
	}{t.Name, s.thingARN(t), t.ID}, nil
}

// describeThing serves DescribeThing: GET /things/{thingName}.
func (s *Server) describeThing(_ *call, in *thingIn) (any, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	t, err := reg.DescribeThing(in.Thing)
	if err != nil {
		return nil, err
	}
	return struct {
		DefaultClientID string            `json:"defaultClientId"`
		ThingName       string            `json:"thingName"`
		ThingID         string            `json:"thingId"`
		ThingARN        string            `json:"thingArn"`
		ThingTypeName   string            `json:"thingTypeName,omitempty"`
		Attributes      map[string]string `json:"attributes"`
		Version         int64             `json:"version"`
	}{t.Name, t.Name, t.ID, s.thingARN(t), t.TypeName, nonNil(t.Attributes), t.Version}, nil
}

type deleteThingIn struct {
	Thing           string `uri:"thingName" check:"thing"`
	ExpectedVersion *int64 `query:"expectedVersion"`
}

// deleteThing serves DeleteThing: DELETE /things/{thingName}?expectedVersion=.
// Deleting a thing that does not exist succeeds, as on AWS.
func (s *Server) deleteThing(_ *call, in *deleteThingIn) (any, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	if in.ExpectedVersion != nil {
		t, err := reg.DescribeThing(in.Thing)
		if errors.Is(err, registry.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if t.Version != *in.ExpectedVersion {
			return nil, errorf(http.StatusConflict, "VersionConflictException",
				"The version for thing %s does not match the expected version.", in.Thing)
		}
	}
	if err := reg.DeleteThing(in.Thing); err != nil && !errors.Is(err, registry.ErrNotFound) {
		if errors.Is(err, registry.ErrConflict) {
			// AWS's words for a thing that still has principals.
			return nil, invalid("Cannot delete. Thing %s is still attached to one or more principals", in.Thing)
		}
		return nil, err
	}
	return nil, nil
}

type listThingsIn struct {
	AttributeName  string `query:"attributeName"`
	AttributeValue string `query:"attributeValue"`
	ThingTypeName  string `query:"thingTypeName" check:"thing"`
	Prefix         bool   `query:"usePrefixAttributeValue"`
}

// listThings serves ListThings: GET /things, paged by nextToken/maxResults.
func (s *Server) listThings(c *call, in *listThingsIn) (any, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	all, err := reg.ListThings()
	if err != nil {
		return nil, err
	}
	things := make([]registry.Thing, 0, len(all))
	for _, t := range all {
		if in.ThingTypeName != "" && t.TypeName != in.ThingTypeName {
			continue
		}
		if in.AttributeName != "" {
			v, ok := t.Attributes[in.AttributeName]
			if !ok || in.AttributeValue != "" && !(v == in.AttributeValue || in.Prefix && strings.HasPrefix(v, in.AttributeValue)) {
				continue
			}
		}
		things = append(things, t)
	}
	slices.SortFunc(things, func(a, b registry.Thing) int { return strings.Compare(a.Name, b.Name) })
	start, end, next, err := page(len(things), c.query, "nextToken", "maxResults", 50, 250)
	if err != nil {
		return nil, err
	}
	out := make([]thingAttribute, 0, end-start)
	for _, t := range things[start:end] {
		out = append(out, thingAttribute{t.Name, t.TypeName, s.thingARN(t), nonNil(t.Attributes), t.Version})
	}
	return struct {
		Things    []thingAttribute `json:"things"`
		NextToken string           `json:"nextToken,omitempty"`
	}{out, next}, nil
}

type createKeysIn struct {
	SetAsActive bool `query:"setAsActive"`
}

// createKeysAndCertificate serves CreateKeysAndCertificate:
// POST /keys-and-certificate?setAsActive=.
func (s *Server) createKeysAndCertificate(_ *call, in *createKeysIn) (any, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	if s.o.Issuer == nil {
		return nil, internal("Certificate issuing")
	}
	certPEM, keyPEM, err := s.o.Issuer.CreateKeysAndCertificate(certCommonName)
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	pub, err := publicKeyPEM(certPEM)
	if err != nil {
		return nil, err
	}
	status := registry.StatusInactive
	if in.SetAsActive {
		status = registry.StatusActive
	}
	cert, err := reg.RegisterCertificate(certPEM, status)
	if err != nil {
		return nil, err
	}
	type keyPair struct {
		PublicKey  string `json:"PublicKey"`
		PrivateKey string `json:"PrivateKey"`
	}
	return struct {
		CertificateARN string  `json:"certificateArn"`
		CertificateID  string  `json:"certificateId"`
		CertificatePEM string  `json:"certificatePem"`
		KeyPair        keyPair `json:"keyPair"`
	}{s.certARN(cert), cert.ID, string(certPEM), keyPair{pub, string(keyPEM)}}, nil
}

// publicKeyPEM extracts the certificate's public key as a PKIX PEM block.
func publicKeyPEM(certPEM []byte) (string, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return "", errors.New("issue certificate: issuer returned no PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("issue certificate: parse issued certificate: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		return "", fmt.Errorf("issue certificate: marshal public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// generationID derives a stable UUID-shaped generation id from a certificate id.
func generationID(id string) string {
	h := sha256.Sum256([]byte("generation:" + id))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// certIn is the input of operations on one certificate.
type certIn struct {
	ID        string `uri:"certificateId" check:"cert"`
	NewStatus string `query:"newStatus"`
}

// describeCertificate serves DescribeCertificate: GET /certificates/{certificateId}.
func (s *Server) describeCertificate(_ *call, in *certIn) (any, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	cert, err := reg.DescribeCertificate(in.ID)
	if err != nil {
		return nil, err
	}
	type validity struct {
		NotBefore epoch `json:"notBefore,omitzero"`
		NotAfter  epoch `json:"notAfter,omitzero"`
	}
	type description struct {
		CertificateARN   string   `json:"certificateArn"`
		CertificateID    string   `json:"certificateId"`
		CACertificateID  string   `json:"caCertificateId,omitempty"`
		Status           string   `json:"status"`
		CertificatePEM   string   `json:"certificatePem"`
		OwnedBy          string   `json:"ownedBy"`
		CreationDate     epoch    `json:"creationDate,omitzero"`
		LastModifiedDate epoch    `json:"lastModifiedDate,omitzero"`
		CustomerVersion  int      `json:"customerVersion"`
		GenerationID     string   `json:"generationId"`
		Validity         validity `json:"validity"`
		CertificateMode  string   `json:"certificateMode"`
	}
	return struct {
		CertificateDescription description `json:"certificateDescription"`
	}{description{
		CertificateARN: s.certARN(cert), CertificateID: cert.ID, CACertificateID: cert.CAID,
		Status: cert.Status, CertificatePEM: cert.PEM, OwnedBy: reg.Account(),
		CreationDate: epoch(cert.CreatedAt), LastModifiedDate: epoch(cert.UpdatedAt),
		CustomerVersion: 1, GenerationID: generationID(cert.ID),
		Validity:        validity{epoch(cert.NotBefore), epoch(cert.NotAfter)},
		CertificateMode: "DEFAULT",
	}}, nil
}

var certStatuses = []string{
	registry.StatusActive, registry.StatusInactive, registry.StatusRevoked,
	registry.StatusPendingTransfer, registry.StatusRegisterInactive, registry.StatusPendingActivation,
}

// updateCertificate serves UpdateCertificate:
// PUT /certificates/{certificateId}?newStatus=.
func (s *Server) updateCertificate(_ *call, in *certIn) (any, error) {
	if in.NewStatus == "" {
		return nil, invalid("1 validation error detected: Value null at 'newStatus' failed to satisfy constraint: Member must not be null")
	}
	if !slices.Contains(certStatuses, in.NewStatus) {
		return nil, validation(in.NewStatus, "newStatus", "Member must satisfy enum value set: ["+strings.Join(certStatuses, ", ")+"]")
	}
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	return nil, reg.UpdateCertificate(in.ID, in.NewStatus)
}

type certificateSummary struct {
	CertificateARN  string `json:"certificateArn"`
	CertificateID   string `json:"certificateId"`
	Status          string `json:"status"`
	CertificateMode string `json:"certificateMode"`
	CreationDate    epoch  `json:"creationDate,omitzero"`
}

type listCertificatesIn struct {
	Ascending bool `query:"isAscendingOrder"`
}

// listCertificates serves ListCertificates: GET /certificates, paged by
// marker/pageSize, newest first unless isAscendingOrder=true.
func (s *Server) listCertificates(c *call, in *listCertificatesIn) (any, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	certs, err := reg.ListCertificates()
	if err != nil {
		return nil, err
	}
	return s.certificatePage(c, slices.Clone(certs), in.Ascending)
}

// certificatePage sorts certs by creation (newest first unless ascending)
// and answers the page that marker/pageSize select.
func (s *Server) certificatePage(c *call, certs []registry.Certificate, ascending bool) (any, error) {
	slices.SortFunc(certs, func(a, b registry.Certificate) int {
		r := cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
		if !ascending {
			r = -r
		}
		return r
	})
	start, end, next, err := page(len(certs), c.query, "marker", "pageSize", 25, 250)
	if err != nil {
		return nil, err
	}
	out := make([]certificateSummary, 0, end-start)
	for _, ct := range certs[start:end] {
		out = append(out, certificateSummary{s.certARN(ct), ct.ID, ct.Status, "DEFAULT", epoch(ct.CreatedAt)})
	}
	return struct {
		Certificates []certificateSummary `json:"certificates"`
		NextMarker   string               `json:"nextMarker,omitempty"`
	}{out, next}, nil
}

// principalCertID reads the x-amzn-principal header: a certificate ARN.
func principalCertID(p string) (string, error) {
	if p == "" {
		return "", invalid("1 validation error detected: Value null at 'principal' failed to satisfy constraint: Member must not be null")
	}
	f := strings.SplitN(p, ":", 6)
	if len(f) != 6 || f[0] != "arn" || f[2] != "iot" {
		return "", invalid("The principal %s is not a valid certificate ARN.", truncate(p, 256))
	}
	id, ok := strings.CutPrefix(f[5], "cert/")
	if !ok {
		return "", invalid("Principal %s is not supported by this simulator: only certificate ARNs are.", truncate(p, 256))
	}
	if checkCertificateID(id) != nil {
		return "", invalid("The principal %s is not a valid certificate ARN.", truncate(p, 256))
	}
	return id, nil
}

// thingPrincipalIn is the input of Attach and DetachThingPrincipal.
type thingPrincipalIn struct {
	Thing         string `uri:"thingName" check:"thing"`
	PrincipalType string `query:"thingPrincipalType"`
	Principal     string `header:"x-amzn-principal"`
	certID        string
}

func (in *thingPrincipalIn) validate() error {
	switch in.PrincipalType {
	case "", "EXCLUSIVE_THING", "NON_EXCLUSIVE_THING":
	default:
		return validation(in.PrincipalType, "thingPrincipalType", "Member must satisfy enum value set: [EXCLUSIVE_THING, NON_EXCLUSIVE_THING]")
	}
	var err error
	in.certID, err = principalCertID(in.Principal)
	return err
}

// thingPrincipal serves AttachThingPrincipal (PUT) and DetachThingPrincipal
// (DELETE): /things/{thingName}/principals with x-amzn-principal.
func (s *Server) thingPrincipal(in *thingPrincipalIn, attach bool) (any, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	op := reg.DetachThingPrincipal
	if attach {
		op = reg.AttachThingPrincipal
	}
	return nil, op(in.Thing, in.certID)
}

// listThingPrincipals serves ListThingPrincipals:
// GET /things/{thingName}/principals, paged by nextToken/maxResults.
func (s *Server) listThingPrincipals(c *call, in *thingIn) (any, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	ps, err := reg.ThingPrincipals(in.Thing)
	if err != nil {
		return nil, err
	}
	arns := make([]string, 0, len(ps))
	for _, p := range ps {
		if !strings.HasPrefix(p, "arn:") {
			p = s.arn("cert/" + p)
		}
		arns = append(arns, p)
	}
	slices.Sort(arns)
	start, end, next, err := page(len(arns), c.query, "nextToken", "maxResults", 25, 250)
	if err != nil {
		return nil, err
	}
	return struct {
		Principals []string `json:"principals"`
		NextToken  string   `json:"nextToken,omitempty"`
	}{arns[start:end], next}, nil
}
