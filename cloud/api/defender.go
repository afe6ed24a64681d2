package api

import (
	"encoding/json"
	"errors"
	"net/http"
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
	mapProfile := func(in *profileIn, err error) error { return fromDefender(err, "Security profile "+in.Name) }
	routes = append(routes,
		op[createProfileIn]{"CreateSecurityProfile", svcControl, http.MethodPost, "/security-profiles/{securityProfileName}", (*Server).createSecurityProfile,
			func(in *createProfileIn, err error) error { return fromDefender(err, "Security profile "+in.Name) }}.route(),
		op[profileIn]{"DescribeSecurityProfile", svcControl, http.MethodGet, "/security-profiles/{securityProfileName}", (*Server).describeSecurityProfile, mapProfile}.route(),
		op[profileTargetIn]{"AttachSecurityProfile", svcControl, http.MethodPut, "/security-profiles/{securityProfileName}/targets", (*Server).attachSecurityProfile,
			func(in *profileTargetIn, err error) error { return fromDefender(err, "Security profile "+in.Name) }}.route(),
		op[violationsIn]{"ListActiveViolations", svcControl, http.MethodGet, "/active-violations", (*Server).listActiveViolations, nil}.route(),
		op[violationEventsIn]{"ListViolationEvents", svcControl, http.MethodGet, "/violation-events", (*Server).listViolationEvents, nil}.route(),
		// iotsim only: an on-demand audit (AWS's Audit has its own task API).
		op[auditIn]{"IotsimAudit", svcControl, http.MethodGet, "/iotsim/audit", (*Server).audit, nil}.route(),
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

// createProfileIn is CreateSecurityProfile's request: the profile itself.
type createProfileIn struct {
	Name string `uri:"securityProfileName" check:"profile"`
	defender.SecurityProfile
}

// createSecurityProfile serves POST /security-profiles/{securityProfileName}.
func (s *Server) createSecurityProfile(_ *call, in *createProfileIn) (any, error) {
	d, err := s.defender()
	if err != nil {
		return nil, err
	}
	p := in.SecurityProfile
	p.Name = in.Name
	p, err = d.CreateSecurityProfile(p)
	if err != nil {
		return nil, err
	}
	return struct {
		Name string `json:"securityProfileName"`
		ARN  string `json:"securityProfileArn"`
	}{p.Name, p.ARN}, nil
}

// profileIn is the input of operations on one security profile.
type profileIn struct {
	Name string `uri:"securityProfileName" check:"profile"`
}

// describeSecurityProfile serves GET /security-profiles/{securityProfileName}.
func (s *Server) describeSecurityProfile(_ *call, in *profileIn) (any, error) {
	d, err := s.defender()
	if err != nil {
		return nil, err
	}
	p, err := d.DescribeSecurityProfile(in.Name)
	if err != nil {
		return nil, err
	}
	return struct {
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
		p.AdditionalMetricsToRetainV2, p.MetricsExportConfig, p.Version, epoch(p.CreationDate), epoch(p.LastModifiedDate)}, nil
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// attachSecurityProfile serves PUT /security-profiles/{name}/targets?securityProfileTargetArn=.
func (s *Server) attachSecurityProfile(_ *call, in *profileTargetIn) (any, error) {
	d, err := s.defender()
	if err != nil {
		return nil, err
	}
	return nil, d.AttachSecurityProfile(in.Name, in.Target)
}

// violationsIn is the filter shared by both violation listings.
type violationsIn struct {
	ThingName            string `query:"thingName"`
	SecurityProfileName  string `query:"securityProfileName" check:"profile"`
	ListSuppressedAlerts bool   `query:"listSuppressedAlerts"`
	BehaviorCriteriaType string `query:"behaviorCriteriaType"`
}

func (in *violationsIn) validate() error {
	if in.ThingName != "" {
		if err := checkLen(in.ThingName, "thingName", 1, 128); err != nil {
			return err
		}
	}
	switch v := in.BehaviorCriteriaType; v {
	case "", "STATIC", "STATISTICAL", "MACHINE_LEARNING":
		return nil
	default:
		return validation(v, "behaviorCriteriaType", "Member must satisfy enum value set: [STATIC, STATISTICAL, MACHINE_LEARNING]")
	}
}

func (in *violationsIn) filter() defender.Filter {
	return defender.Filter{ThingName: in.ThingName, SecurityProfileName: in.SecurityProfileName}
}

type metricValueOut = defender.MetricValue

// listActiveViolations serves GET /active-violations.
func (s *Server) listActiveViolations(c *call, in *violationsIn) (any, error) {
	d, err := s.defender()
	if err != nil {
		return nil, err
	}
	all := d.ListActiveViolations(in.filter())
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return nil, err
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
	return out, nil
}

// timeParam reads a required query timestamp: ISO-8601 (what the CLI and
// the SDKs send) or epoch seconds.
func timeParam(v, name string) (time.Time, error) {
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

type violationEventsIn struct {
	violationsIn
	StartTime string `query:"startTime"`
	EndTime   string `query:"endTime"`
	start     time.Time
	end       time.Time
}

func (in *violationEventsIn) validate() error {
	var err error
	if in.start, err = timeParam(in.StartTime, "startTime"); err != nil {
		return err
	}
	if in.end, err = timeParam(in.EndTime, "endTime"); err != nil {
		return err
	}
	return in.violationsIn.validate()
}

// listViolationEvents serves GET /violation-events?startTime=&endTime=.
func (s *Server) listViolationEvents(c *call, in *violationEventsIn) (any, error) {
	d, err := s.defender()
	if err != nil {
		return nil, err
	}
	all := d.ListViolationEvents(in.start, in.end, in.filter())
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return nil, err
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
	return out, nil
}

type auditIn struct {
	Days *int64 `query:"daysUntilExpiry"`
}

func (in *auditIn) validate() error {
	switch {
	case in.Days == nil:
	case *in.Days < 1:
		return validation(strconv.FormatInt(*in.Days, 10), "daysUntilExpiry", "Member must have value greater than or equal to 1")
	case *in.Days > 3650:
		return validation(strconv.FormatInt(*in.Days, 10), "daysUntilExpiry", "Member must have value less than or equal to 3650")
	}
	return nil
}

// audit serves iotsim's GET /iotsim/audit?daysUntilExpiry=N.
func (s *Server) audit(_ *call, in *auditIn) (any, error) {
	days := defender.DefaultExpiryDays
	if in.Days != nil {
		days = int(*in.Days)
	}
	d, err := s.defender()
	if err != nil {
		return nil, err
	}
	fs, err := d.Audit(s.now(), days)
	if err != nil {
		return nil, err
	}
	return struct {
		Findings []defender.Finding `json:"findings"`
	}{nonNilSlice(fs)}, nil
}
