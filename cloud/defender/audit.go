package defender

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/iotagent/iotagent/cloud/registry"
)

// Audit check names (AWS's names for the same checks).
const (
	CheckCertificateShared    = "DEVICE_CERTIFICATE_SHARED_CHECK"
	CheckCertificateExpiring  = "DEVICE_CERTIFICATE_EXPIRING_CHECK"
	CheckPolicyOverPermissive = "IOT_POLICY_OVERLY_PERMISSIVE_CHECK"
)

// DefaultExpiryDays is how close to expiry a certificate is reported.
const DefaultExpiryDays = 30

// Finding is one non-compliant resource. The reason codes follow AWS's
// audit findings where known (unconfirmed).
type Finding struct {
	CheckName    string   `json:"checkName"`
	Severity     string   `json:"severity"`     // CRITICAL, HIGH, MEDIUM, LOW
	ResourceType string   `json:"resourceType"` // DEVICE_CERTIFICATE or IOT_POLICY
	ResourceID   string   `json:"resourceIdentifier"`
	ReasonCode   string   `json:"reasonForNonComplianceCode"`
	Reason       string   `json:"reasonForNonCompliance"`
	Things       []string `json:"things,omitempty"`
}

// Audit runs the three checks now: a device certificate attached to more
// than one thing, an ACTIVE certificate that expires within expiryDays
// (DefaultExpiryDays if <= 0, already expired included) and a policy that
// allows iot:Publish or iot:Subscribe on every topic.
func (s *Service) Audit(now time.Time, expiryDays int) ([]Finding, error) {
	if expiryDays <= 0 {
		expiryDays = DefaultExpiryDays
	}
	certs, err := s.o.Registry.ListCertificates()
	if err != nil {
		return nil, fmt.Errorf("audit: list certificates: %w", err)
	}
	var out []Finding
	for _, c := range certs {
		if len(c.Things) > 1 {
			out = append(out, Finding{
				CheckName: CheckCertificateShared, Severity: "CRITICAL", ResourceType: "DEVICE_CERTIFICATE",
				ResourceID: c.ID, ReasonCode: "CERTIFICATE_SHARED_BY_MULTIPLE_THINGS",
				Reason: fmt.Sprintf("Certificate is attached to %d things", len(c.Things)), Things: slices.Clone(c.Things),
			})
		}
		if c.Status == registry.StatusActive && !c.NotAfter.IsZero() && c.NotAfter.Before(now.AddDate(0, 0, expiryDays)) {
			reason, code := fmt.Sprintf("Certificate expires on %s, within %d days", c.NotAfter.UTC().Format(time.RFC3339), expiryDays), "CERTIFICATE_EXPIRING"
			if !c.NotAfter.After(now) {
				reason, code = fmt.Sprintf("Certificate expired on %s", c.NotAfter.UTC().Format(time.RFC3339)), "CERTIFICATE_EXPIRED"
			}
			out = append(out, Finding{
				CheckName: CheckCertificateExpiring, Severity: "MEDIUM", ResourceType: "DEVICE_CERTIFICATE",
				ResourceID: c.ID, ReasonCode: code, Reason: reason, Things: slices.Clone(c.Things),
			})
		}
	}
	if s.o.Policies != nil {
		pols, err := s.o.Policies()
		if err != nil {
			return nil, fmt.Errorf("audit: list policies: %w", err)
		}
		for _, p := range pols {
			if actions := broadActions(p.Document); len(actions) > 0 {
				out = append(out, Finding{
					CheckName: CheckPolicyOverPermissive, Severity: "CRITICAL", ResourceType: "IOT_POLICY",
					ResourceID: p.Name, ReasonCode: "ALLOWS_BROAD_ACCESS_TO_IOT_DATA_PLANE_ACTIONS",
					Reason: "Policy allows " + strings.Join(actions, " and ") + " on all topics",
				})
			}
		}
	}
	return out, nil
}

// broadActions returns which of iot:Publish and iot:Subscribe doc allows on
// every topic. An unparsable document allows nothing.
func broadActions(doc string) []string {
	var d struct {
		Statement json.RawMessage
	}
	if json.Unmarshal([]byte(doc), &d) != nil {
		return nil
	}
	type stmt struct {
		Effect   string
		Action   json.RawMessage
		Resource json.RawMessage
	}
	var stmts []stmt
	if json.Unmarshal(d.Statement, &stmts) != nil {
		var one stmt
		if json.Unmarshal(d.Statement, &one) != nil {
			return nil
		}
		stmts = []stmt{one}
	}
	pub, sub := false, false
	for _, st := range stmts {
		if st.Effect != "Allow" || !slices.ContainsFunc(strList(st.Resource), everything) {
			continue
		}
		for _, a := range strList(st.Action) {
			switch strings.ToLower(a) {
			case "*", "iot:*":
				pub, sub = true, true
			case "iot:publish", "iot:*publish", "iot:publish*":
				pub = true
			case "iot:subscribe", "iot:*subscribe", "iot:subscribe*":
				sub = true
			}
		}
	}
	var out []string
	if pub {
		out = append(out, "iot:Publish")
	}
	if sub {
		out = append(out, "iot:Subscribe")
	}
	return out
}

// everything reports whether an IAM resource covers every topic.
func everything(r string) bool {
	if r == "*" {
		return true
	}
	if !strings.HasPrefix(r, "arn:aws:iot:") {
		return false
	}
	i := strings.LastIndexByte(r, ':')
	switch r[i+1:] {
	case "*", "topic/*", "topicfilter/*":
		return true
	}
	return false
}

// strList decodes a string or an array of strings.
func strList(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}
