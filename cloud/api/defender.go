package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/iotagent/iotagent/cloud/defender"
)

// Defender is the Device Defender service behind the Detect operations
// and iotsim's audit endpoint; *defender.Service satisfies it.
type Defender interface {
	CreateSecurityProfile(p defender.SecurityProfile) (defender.SecurityProfile, error)
	DescribeSecurityProfile(name string) (defender.SecurityProfile, error)
	AttachSecurityProfile(name, targetARN string) error
	ListActiveViolations(f defender.Filter) []defender.ActiveViolation
	ListViolationEvents(start, end time.Time, f defender.Filter) []defender.ViolationEvent
	Audit(now time.Time, expiryDays int) ([]defender.Finding, error)
}

func init() {
	routes = append(routes,
		newRoute(svcControl, http.MethodPost, "/security-profiles/{securityProfileName}", "CreateSecurityProfile", (*Server).createSecurityProfile),
		newRoute(svcControl, http.MethodGet, "/security-profiles/{securityProfileName}", "DescribeSecurityProfile", (*Server).describeSecurityProfile),
		newRoute(svcControl, http.MethodPut, "/security-profiles/{securityProfileName}/targets", "AttachSecurityProfile", (*Server).attachSecurityProfile),
		newRoute(svcControl, http.MethodGet, "/active-violations", "ListActiveViolations", (*Server).listActiveViolations),
		newRoute(svcControl, http.MethodGet, "/violation-events", "ListViolationEvents", (*Server).listViolationEvents),
		// iotsim only: an on-demand audit (AWS's Audit has its own task API).
		newRoute(svcControl, http.MethodGet, "/iotsim/audit", "IotsimAudit", (*Server).audit),
	)
}

func (s *Server) defender() (Defender, error) {
	if s.o.Defender == nil {
		return nil, internal("Device Defender")
	}
	return s.o.Defender, nil
}

// fromDefender maps the defender service's sentinels to AWS's errors.
func fromDefender(err error, what string) error {
	switch {
	case errors.Is(err, defender.ErrNotFound):
		return errorf(http.StatusNotFound, "ResourceNotFoundException", "%s does not exist", what)
	case errors.Is(err, defender.ErrExists):
		return errorf(http.StatusConflict, "ResourceAlreadyExistsException", "%s already exists", what)
	case errors.Is(err, defender.ErrInvalid):
		msg := err.Error()
		if len(msg) > len(defender.ErrInvalid.Error())+2 {
			msg = msg[len(defender.ErrInvalid.Error())+2:]
		}
		return invalid("%s", msg)
	}
	return err
}

func checkProfileName(v string) error {
	if err := checkLen(v, "securityProfileName", 1, 128); err != nil {
		return err
	}
	if !nameChars(v, false) {
		return validation(v, "securityProfileName", "Member must satisfy regular expression pattern: [a-zA-Z0-9:_-]+")
	}
	return nil
}

// createSecurityProfile serves POST /security-profiles/{securityProfileName}.
func (s *Server) createSecurityProfile(c *call) error {
	name := c.labels["securityProfileName"]
	if err := checkProfileName(name); err != nil {
		return err
	}
	var in defender.SecurityProfile
	if len(bytes.TrimSpace(c.body)) > 0 {
		if err := json.Unmarshal(c.body, &in); err != nil {
			return invalid("The request body is not a valid CreateSecurityProfile request: %v", err)
		}
	}
	in.Name = name
	d, err := s.defender()
	if err != nil {
		return err
	}
	p, err := d.CreateSecurityProfile(in)
	if err != nil {
		return fromDefender(err, "Security profile "+name)
	}
	return writeJSON(c.w, struct {
		Name string `json:"securityProfileName"`
		ARN  string `json:"securityProfileArn"`
	}{p.Name, p.ARN})
}

// describeSecurityProfile serves GET /security-profiles/{securityProfileName}.
func (s *Server) describeSecurityProfile(c *call) error {
	name := c.labels["securityProfileName"]
	if err := checkProfileName(name); err != nil {
		return err
	}
	d, err := s.defender()
	if err != nil {
		return err
	}
	p, err := d.DescribeSecurityProfile(name)
	if err != nil {
		return fromDefender(err, "Security profile "+name)
	}
	return writeJSON(c.w, struct {
		Name                        string                     `json:"securityProfileName"`
		ARN                         string                     `json:"securityProfileArn"`
		Description                 string                     `json:"securityProfileDescription,omitempty"`
		Behaviors                   []defender.Behavior        `json:"behaviors"`
		AlertTargets                map[string]json.RawMessage `json:"alertTargets,omitempty"`
		AdditionalMetricsToRetain   []string                   `json:"additionalMetricsToRetain,omitempty"`
		AdditionalMetricsToRetainV2 json.RawMessage            `json:"additionalMetricsToRetainV2,omitempty"`
		MetricsExportConfig         json.RawMessage            `json:"metricsExportConfig,omitempty"`
		Version                     int64                      `json:"version"`
		CreationDate                epoch                      `json:"creationDate"`
		LastModifiedDate            epoch                      `json:"lastModifiedDate"`
	}{p.Name, p.ARN, p.Description, nonNilSlice(p.Behaviors), p.AlertTargets, p.AdditionalMetricsToRetain,
		p.AdditionalMetricsToRetainV2, p.MetricsExportConfig, p.Version, epoch(p.CreationDate), epoch(p.LastModifiedDate)})
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// attachSecurityProfile serves PUT /security-profiles/{name}/targets?securityProfileTargetArn=.
func (s *Server) attachSecurityProfile(c *call) error {
	name := c.labels["securityProfileName"]
	if err := checkProfileName(name); err != nil {
		return err
	}
	target := c.query.Get("securityProfileTargetArn")
	if target == "" {
		return invalid("1 validation error detected: Value null at 'securityProfileTargetArn' failed to satisfy constraint: Member must not be null")
	}
	d, err := s.defender()
	if err != nil {
		return err
	}
	if err := d.AttachSecurityProfile(name, target); err != nil {
		return fromDefender(err, "Security profile "+name)
	}
	return writeRaw(c.w, []byte("{}"))
}

// violationFilter reads the query parameters shared by both list operations.
func violationFilter(q url.Values) (defender.Filter, error) {
	f := defender.Filter{ThingName: q.Get("thingName"), SecurityProfileName: q.Get("securityProfileName")}
	if f.ThingName != "" {
		if err := checkLen(f.ThingName, "thingName", 1, 128); err != nil {
			return f, err
		}
	}
	if f.SecurityProfileName != "" {
		if err := checkProfileName(f.SecurityProfileName); err != nil {
			return f, err
		}
	}
	if _, err := boolParam(q, "listSuppressedAlerts"); err != nil {
		return f, err
	}
	switch v := q.Get("behaviorCriteriaType"); v {
	case "", "STATIC", "STATISTICAL", "MACHINE_LEARNING":
	default:
		return f, validation(v, "behaviorCriteriaType", "Member must satisfy enum value set: [STATIC, STATISTICAL, MACHINE_LEARNING]")
	}
	return f, nil
}

type metricValueOut = defender.MetricValue

// listActiveViolations serves GET /active-violations.
func (s *Server) listActiveViolations(c *call) error {
	f, err := violationFilter(c.query)
	if err != nil {
		return err
	}
	d, err := s.defender()
	if err != nil {
		return err
	}
	all := d.ListActiveViolations(f)
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return err
	}
	type item struct {
		ViolationID         string            `json:"violationId"`
		ThingName           string            `json:"thingName"`
		SecurityProfileName string            `json:"securityProfileName"`
		Behavior            defender.Behavior `json:"behavior"`
		LastViolationValue  metricValueOut    `json:"lastViolationValue"`
		VerificationState   string            `json:"verificationState"`
		LastViolationTime   epoch             `json:"lastViolationTime"`
		ViolationStartTime  epoch             `json:"violationStartTime"`
	}
	out := struct {
		ActiveViolations []item `json:"activeViolations"`
		NextToken        string `json:"nextToken,omitempty"`
	}{ActiveViolations: []item{}, NextToken: next}
	for _, v := range all[start:end] {
		out.ActiveViolations = append(out.ActiveViolations, item{v.ViolationID, v.ThingName, v.SecurityProfileName, v.Behavior,
			v.LastViolationValue, v.VerificationState, epoch(v.LastViolationTime), epoch(v.ViolationStartTime)})
	}
	return writeJSON(c.w, out)
}

// timeParam reads a required query timestamp: ISO-8601 (what the CLI and
// the SDKs send) or epoch seconds.
func timeParam(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, invalid("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", name)
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e11 {
		return time.UnixMilli(int64(f * 1000)), nil
	}
	return time.Time{}, invalid("Value '%s' for '%s' is not an ISO-8601 timestamp", truncate(v, 64), name)
}

// listViolationEvents serves GET /violation-events?startTime=&endTime=.
func (s *Server) listViolationEvents(c *call) error {
	startT, err := timeParam(c.query, "startTime")
	if err != nil {
		return err
	}
	endT, err := timeParam(c.query, "endTime")
	if err != nil {
		return err
	}
	f, err := violationFilter(c.query)
	if err != nil {
		return err
	}
	d, err := s.defender()
	if err != nil {
		return err
	}
	all := d.ListViolationEvents(startT, endT, f)
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return err
	}
	type item struct {
		ViolationID         string            `json:"violationId"`
		ThingName           string            `json:"thingName"`
		SecurityProfileName string            `json:"securityProfileName"`
		Behavior            defender.Behavior `json:"behavior"`
		MetricValue         metricValueOut    `json:"metricValue"`
		ViolationEventType  string            `json:"violationEventType"`
		VerificationState   string            `json:"verificationState"`
		ViolationEventTime  epoch             `json:"violationEventTime"`
	}
	out := struct {
		ViolationEvents []item `json:"violationEvents"`
		NextToken       string `json:"nextToken,omitempty"`
	}{ViolationEvents: []item{}, NextToken: next}
	for _, e := range all[start:end] {
		out.ViolationEvents = append(out.ViolationEvents, item{e.ViolationID, e.ThingName, e.SecurityProfileName, e.Behavior,
			e.MetricValue, e.ViolationEventType, e.VerificationState, epoch(e.ViolationEventTime)})
	}
	return writeJSON(c.w, out)
}

// audit serves iotsim's GET /iotsim/audit?daysUntilExpiry=N.
func (s *Server) audit(c *call) error {
	days, err := intParam(c.query, "daysUntilExpiry", 1, 3650, defender.DefaultExpiryDays)
	if err != nil {
		return err
	}
	d, err := s.defender()
	if err != nil {
		return err
	}
	fs, err := d.Audit(s.now(), days)
	if err != nil {
		return err
	}
	return writeJSON(c.w, struct {
		Findings []defender.Finding `json:"findings"`
	}{nonNilSlice(fs)})
}
