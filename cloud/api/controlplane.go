package api

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/iotagent/iotagent/cloud/registry"
)

// certCommonName is the subject CN of certificates made by
// CreateKeysAndCertificate, as AWS names them.
const certCommonName = "AWS IoT Certificate"

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

// describeEndpoint serves DescribeEndpoint: GET /endpoint?endpointType=.
func (s *Server) describeEndpoint(c *call) error {
	switch t := c.query.Get("endpointType"); t {
	case "", "iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs":
	default:
		return invalid("Endpoint type %s is not valid.", truncate(t, 128))
	}
	host := s.o.Endpoint
	if host == "" {
		host = c.r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	return writeJSON(c.w, struct {
		EndpointAddress string `json:"endpointAddress"`
	}{host})
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

// createThing serves CreateThing: POST /things/{thingName}.
func (s *Server) createThing(c *call) error {
	name := c.labels["thingName"]
	if err := checkThingName("thingName", name); err != nil {
		return err
	}
	var in struct {
		ThingTypeName    string `json:"thingTypeName"`
		AttributePayload *struct {
			Attributes map[string]string `json:"attributes"`
			Merge      bool              `json:"merge"`
		} `json:"attributePayload"`
		BillingGroupName string `json:"billingGroupName"`
	}
	if len(bytes.TrimSpace(c.body)) > 0 {
		if err := json.Unmarshal(c.body, &in); err != nil {
			return invalid("The request body is not a valid JSON object: %v", err)
		}
	}
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
	var attrs map[string]string
	if in.AttributePayload != nil {
		attrs = in.AttributePayload.Attributes
		for k, v := range attrs {
			if err := checkAttribute(k, v); err != nil {
				return err
			}
		}
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	t, err := reg.CreateThing(name, in.ThingTypeName, attrs)
	if err != nil {
		return fromRegistry(err, "Thing type "+in.ThingTypeName+" cannot be found.")
	}
	return writeJSON(c.w, struct {
		ThingName string `json:"thingName"`
		ThingARN  string `json:"thingArn"`
		ThingID   string `json:"thingId"`
	}{t.Name, s.thingARN(t), t.ID})
}

// describeThing serves DescribeThing: GET /things/{thingName}.
func (s *Server) describeThing(c *call) error {
	name := c.labels["thingName"]
	if err := checkThingName("thingName", name); err != nil {
		return err
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	t, err := reg.DescribeThing(name)
	if err != nil {
		return fromRegistry(err, thingNotFound(name))
	}
	return writeJSON(c.w, struct {
		DefaultClientID string            `json:"defaultClientId"`
		ThingName       string            `json:"thingName"`
		ThingID         string            `json:"thingId"`
		ThingARN        string            `json:"thingArn"`
		ThingTypeName   string            `json:"thingTypeName,omitempty"`
		Attributes      map[string]string `json:"attributes"`
		Version         int64             `json:"version"`
	}{t.Name, t.Name, t.ID, s.thingARN(t), t.TypeName, nonNil(t.Attributes), t.Version})
}

// deleteThing serves DeleteThing: DELETE /things/{thingName}?expectedVersion=.
// Deleting a thing that does not exist succeeds, as on AWS.
func (s *Server) deleteThing(c *call) error {
	name := c.labels["thingName"]
	if err := checkThingName("thingName", name); err != nil {
		return err
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	if v := c.query.Get("expectedVersion"); v != "" {
		want, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return invalid("Value '%s' for 'expectedVersion' is not an integer", truncate(v, 64))
		}
		t, err := reg.DescribeThing(name)
		if errors.Is(err, registry.ErrNotFound) {
			return writeRaw(c.w, []byte("{}"))
		}
		if err != nil {
			return fromRegistry(err, thingNotFound(name))
		}
		if t.Version != want {
			return errorf(http.StatusConflict, "VersionConflictException",
				"The version for thing %s does not match the expected version.", name)
		}
	}
	if err := reg.DeleteThing(name); err != nil && !errors.Is(err, registry.ErrNotFound) {
		if errors.Is(err, registry.ErrConflict) {
			// AWS's words for a thing that still has principals.
			return invalid("Cannot delete. Thing %s is still attached to one or more principals", name)
		}
		return fromRegistry(err, thingNotFound(name))
	}
	return writeRaw(c.w, []byte("{}"))
}

// listThings serves ListThings: GET /things, paged by nextToken/maxResults.
func (s *Server) listThings(c *call) error {
	q := c.query
	attrName, attrValue, typeName := q.Get("attributeName"), q.Get("attributeValue"), q.Get("thingTypeName")
	prefix, err := boolParam(q, "usePrefixAttributeValue")
	if err != nil {
		return err
	}
	if typeName != "" {
		if err := checkThingName("thingTypeName", typeName); err != nil {
			return err
		}
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	all, err := reg.ListThings()
	if err != nil {
		return fromRegistry(err, "")
	}
	things := make([]registry.Thing, 0, len(all))
	for _, t := range all {
		if typeName != "" && t.TypeName != typeName {
			continue
		}
		if attrName != "" {
			v, ok := t.Attributes[attrName]
			if !ok || attrValue != "" && !(v == attrValue || prefix && strings.HasPrefix(v, attrValue)) {
				continue
			}
		}
		things = append(things, t)
	}
	slices.SortFunc(things, func(a, b registry.Thing) int { return strings.Compare(a.Name, b.Name) })
	start, end, next, err := page(len(things), q, "nextToken", "maxResults", 50, 250)
	if err != nil {
		return err
	}
	out := make([]thingAttribute, 0, end-start)
	for _, t := range things[start:end] {
		out = append(out, thingAttribute{t.Name, t.TypeName, s.thingARN(t), nonNil(t.Attributes), t.Version})
	}
	return writeJSON(c.w, struct {
		Things    []thingAttribute `json:"things"`
		NextToken string           `json:"nextToken,omitempty"`
	}{out, next})
}

// createKeysAndCertificate serves CreateKeysAndCertificate:
// POST /keys-and-certificate?setAsActive=.
func (s *Server) createKeysAndCertificate(c *call) error {
	active, err := boolParam(c.query, "setAsActive")
	if err != nil {
		return err
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	if s.o.Issuer == nil {
		return internal("Certificate issuing")
	}
	certPEM, keyPEM, err := s.o.Issuer.CreateKeysAndCertificate(certCommonName)
	if err != nil {
		return fmt.Errorf("issue certificate: %w", err)
	}
	pub, err := publicKeyPEM(certPEM)
	if err != nil {
		return err
	}
	status := registry.StatusInactive
	if active {
		status = registry.StatusActive
	}
	cert, err := reg.RegisterCertificate(certPEM, status)
	if err != nil {
		return fromRegistry(err, "")
	}
	type keyPair struct {
		PublicKey  string `json:"PublicKey"`
		PrivateKey string `json:"PrivateKey"`
	}
	return writeJSON(c.w, struct {
		CertificateARN string  `json:"certificateArn"`
		CertificateID  string  `json:"certificateId"`
		CertificatePEM string  `json:"certificatePem"`
		KeyPair        keyPair `json:"keyPair"`
	}{s.certARN(cert), cert.ID, string(certPEM), keyPair{pub, string(keyPEM)}})
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

// describeCertificate serves DescribeCertificate: GET /certificates/{certificateId}.
func (s *Server) describeCertificate(c *call) error {
	id := c.labels["certificateId"]
	if err := checkCertificateID(id); err != nil {
		return err
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	cert, err := reg.DescribeCertificate(id)
	if err != nil {
		return fromRegistry(err, certNotFound(id))
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
	return writeJSON(c.w, struct {
		CertificateDescription description `json:"certificateDescription"`
	}{description{
		CertificateARN: s.certARN(cert), CertificateID: cert.ID, CACertificateID: cert.CAID,
		Status: cert.Status, CertificatePEM: cert.PEM, OwnedBy: reg.Account(),
		CreationDate: epoch(cert.CreatedAt), LastModifiedDate: epoch(cert.UpdatedAt),
		CustomerVersion: 1, GenerationID: generationID(cert.ID),
		Validity:        validity{epoch(cert.NotBefore), epoch(cert.NotAfter)},
		CertificateMode: "DEFAULT",
	}})
}

var certStatuses = []string{
	registry.StatusActive, registry.StatusInactive, registry.StatusRevoked,
	registry.StatusPendingTransfer, registry.StatusRegisterInactive, registry.StatusPendingActivation,
}

// updateCertificate serves UpdateCertificate:
// PUT /certificates/{certificateId}?newStatus=.
func (s *Server) updateCertificate(c *call) error {
	id := c.labels["certificateId"]
	if err := checkCertificateID(id); err != nil {
		return err
	}
	status := c.query.Get("newStatus")
	if status == "" {
		return invalid("1 validation error detected: Value null at 'newStatus' failed to satisfy constraint: Member must not be null")
	}
	if !slices.Contains(certStatuses, status) {
		return validation(status, "newStatus", "Member must satisfy enum value set: ["+strings.Join(certStatuses, ", ")+"]")
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	if err := reg.UpdateCertificate(id, status); err != nil {
		return fromRegistry(err, certNotFound(id))
	}
	return writeRaw(c.w, []byte("{}"))
}

type certificateSummary struct {
	CertificateARN  string `json:"certificateArn"`
	CertificateID   string `json:"certificateId"`
	Status          string `json:"status"`
	CertificateMode string `json:"certificateMode"`
	CreationDate    epoch  `json:"creationDate,omitzero"`
}

// listCertificates serves ListCertificates: GET /certificates, paged by
// marker/pageSize, newest first unless isAscendingOrder=true.
func (s *Server) listCertificates(c *call) error {
	asc, err := boolParam(c.query, "isAscendingOrder")
	if err != nil {
		return err
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	certs, err := reg.ListCertificates()
	if err != nil {
		return fromRegistry(err, "")
	}
	certs = slices.Clone(certs)
	slices.SortFunc(certs, func(a, b registry.Certificate) int {
		r := cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
		if !asc {
			r = -r
		}
		return r
	})
	start, end, next, err := page(len(certs), c.query, "marker", "pageSize", 25, 250)
	if err != nil {
		return err
	}
	out := make([]certificateSummary, 0, end-start)
	for _, ct := range certs[start:end] {
		out = append(out, certificateSummary{s.certARN(ct), ct.ID, ct.Status, "DEFAULT", epoch(ct.CreatedAt)})
	}
	return writeJSON(c.w, struct {
		Certificates []certificateSummary `json:"certificates"`
		NextMarker   string               `json:"nextMarker,omitempty"`
	}{out, next})
}

// principalCertID reads the x-amzn-principal header: a certificate ARN.
func principalCertID(c *call) (string, error) {
	p := c.r.Header.Get("x-amzn-principal")
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

func (s *Server) thingPrincipal(c *call, attach bool) error {
	thing := c.labels["thingName"]
	if err := checkThingName("thingName", thing); err != nil {
		return err
	}
	if attach {
		switch v := c.query.Get("thingPrincipalType"); v {
		case "", "EXCLUSIVE_THING", "NON_EXCLUSIVE_THING":
		default:
			return validation(v, "thingPrincipalType", "Member must satisfy enum value set: [EXCLUSIVE_THING, NON_EXCLUSIVE_THING]")
		}
	}
	id, err := principalCertID(c)
	if err != nil {
		return err
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	op := reg.DetachThingPrincipal
	if attach {
		op = reg.AttachThingPrincipal
	}
	if err := op(thing, id); err != nil {
		return fromRegistry(err, "The thing "+thing+" or the certificate "+id+" cannot be found.")
	}
	return writeRaw(c.w, []byte("{}"))
}

// attachThingPrincipal serves AttachThingPrincipal:
// PUT /things/{thingName}/principals with x-amzn-principal.
func (s *Server) attachThingPrincipal(c *call) error { return s.thingPrincipal(c, true) }

// detachThingPrincipal serves DetachThingPrincipal:
// DELETE /things/{thingName}/principals with x-amzn-principal.
func (s *Server) detachThingPrincipal(c *call) error { return s.thingPrincipal(c, false) }

// listThingPrincipals serves ListThingPrincipals:
// GET /things/{thingName}/principals, paged by nextToken/maxResults.
func (s *Server) listThingPrincipals(c *call) error {
	thing := c.labels["thingName"]
	if err := checkThingName("thingName", thing); err != nil {
		return err
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	ps, err := reg.ThingPrincipals(thing)
	if err != nil {
		return fromRegistry(err, thingNotFound(thing))
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
		return err
	}
	return writeJSON(c.w, struct {
		Principals []string `json:"principals"`
		NextToken  string   `json:"nextToken,omitempty"`
	}{arns[start:end], next})
}
