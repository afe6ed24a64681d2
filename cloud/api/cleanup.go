package api

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/iotagent/iotagent/cloud/defender"
	"github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/cloud/registry"
)

// The operations users' scripts and clean-ups need: cancel and delete
// jobs and executions, delete certificates, policies, thing groups and
// security profiles, and the listings that find what to delete.

// JobsCleanup is the part of the Jobs service behind CancelJobExecution,
// DeleteJob and DeleteJobExecution; *jobs.Service satisfies it.
type JobsCleanup interface {
	CancelJobExecution(thing, jobID string, force bool, expectedVersion *int64, details map[string]string) error
	DeleteJob(jobID string, force bool) error
	DeleteJobExecution(thing, jobID string, executionNumber int64, force bool) error
}

// RegistryCleanup is the part of the registry behind the delete
// operations and the CA listings; *registry.Registry satisfies it.
type RegistryCleanup interface {
	DeleteCertificate(id string) error
	ForceDeleteCertificate(id string) error
	DeletePolicy(name string) error
	DeleteThingGroup(name string, expectedVersion *int64) error
	RemoveThingFromThingGroup(group, thing string) error
	ListCACertificates() ([]registry.CACertificate, error)
}

// DefenderCleanup is the part of Device Defender behind the profile
// listings and deletions; *defender.Service satisfies it.
type DefenderCleanup interface {
	DetachSecurityProfile(name, target string) error
	DeleteSecurityProfile(name string, expectedVersion *int64) error
	ListSecurityProfiles() []defender.SecurityProfile
}

func init() {
	routes = append(routes,
		op[cancelExecutionIn]{"CancelJobExecution", svcControl, http.MethodPut, "/things/{thingName}/jobs/{jobId}/cancel",
			(*Server).cancelJobExecution, jobsCleanupErrors[cancelExecutionIn]}.route(),
		op[deleteJobIn]{"DeleteJob", svcControl, http.MethodDelete, "/jobs/{jobId}",
			(*Server).deleteJob, jobsCleanupErrors[deleteJobIn]}.route(),
		op[deleteExecutionIn]{"DeleteJobExecution", svcControl, http.MethodDelete, "/things/{thingName}/jobs/{jobId}/executionNumber/{executionNumber}",
			(*Server).deleteJobExecution, jobsCleanupErrors[deleteExecutionIn]}.route(),
		op[deleteCertificateIn]{"DeleteCertificate", svcControl, http.MethodDelete, "/certificates/{certificateId}",
			(*Server).deleteCertificate, func(in *deleteCertificateIn, err error) error { return fromRegistry(err, certNotFound(in.ID)) }}.route(),
		op[deletePolicyIn]{"DeletePolicy", svcControl, http.MethodDelete, "/policies/{policyName}",
			(*Server).deletePolicy, func(in *deletePolicyIn, err error) error { return fromIdentity(err, policyNotFound(in.Name)) }}.route(),
		op[deleteThingGroupIn]{"DeleteThingGroup", svcControl, http.MethodDelete, "/thing-groups/{thingGroupName}",
			(*Server).deleteThingGroup, func(in *deleteThingGroupIn, err error) error { return versionConflict(fromIdentity(err, "")) }}.route(),
		op[thingGroupMemberIn]{"RemoveThingFromThingGroup", svcControl, http.MethodPut, "/thing-groups/removeThingFromThingGroup",
			(*Server).removeThingFromThingGroup, func(in *thingGroupMemberIn, err error) error {
				return fromIdentity(err, "The thing "+in.thing+" or the thing group "+in.group+" cannot be found.")
			}}.route(),
		op[profileTargetIn]{"DetachSecurityProfile", svcControl, http.MethodDelete, "/security-profiles/{securityProfileName}/targets",
			(*Server).detachSecurityProfile, func(in *profileTargetIn, err error) error {
				return fromDefender(err, "Security profile "+in.Name+" attached to "+truncate(in.Target, 256))
			}}.route(),
		op[deleteProfileIn]{"DeleteSecurityProfile", svcControl, http.MethodDelete, "/security-profiles/{securityProfileName}",
			(*Server).deleteSecurityProfile, func(in *deleteProfileIn, err error) error {
				return versionConflict(fromDefender(err, "Security profile "+in.Name))
			}}.route(),
		op[listProfilesIn]{"ListSecurityProfiles", svcControl, http.MethodGet, "/security-profiles",
			(*Server).listSecurityProfiles, nil}.route(),
		op[listProfileTargetsIn]{"ListTargetsForSecurityProfile", svcControl, http.MethodGet, "/security-profiles/{securityProfileName}/targets",
			(*Server).listTargetsForSecurityProfile, func(in *listProfileTargetsIn, err error) error {
				return fromDefender(err, "Security profile "+in.Name)
			}}.route(),
		op[listCAsIn]{"ListCACertificates", svcControl, http.MethodGet, "/cacertificates",
			(*Server).listCACertificates, nil}.route(),
		op[listByCAIn]{"ListCertificatesByCA", svcControl, http.MethodGet, "/certificates-by-ca/{caCertificateId}",
			(*Server).listCertificatesByCA, nil}.route(),
	)
}

// jobsCleanupErrors maps the jobs service's errors for the operations
// whose models have AWS's 409s: InvalidStateTransitionException and
// VersionConflictException.
func jobsCleanupErrors[In any](_ *In, err error) error {
	switch {
	case errors.Is(err, jobs.ErrConflict):
		return errorf(http.StatusConflict, "InvalidStateTransitionException", "%s", serviceMessage(err))
	case errors.Is(err, jobs.ErrVersionMismatch):
		return errorf(http.StatusConflict, "VersionConflictException", "%s", serviceMessage(err))
	}
	return fromJobs(err)
}

// versionConflict maps the registry's and defender's version mismatches
// to VersionConflictException; other errors pass.
func versionConflict(err error) error {
	if errors.Is(err, registry.ErrVersionMismatch) || errors.Is(err, defender.ErrVersionMismatch) {
		return errorf(http.StatusConflict, "VersionConflictException", "%s", serviceMessage(err))
	}
	return err
}

// serviceMessage is a service error's text for a client: the jobs
// service's own message, or the error with its package prefix cut.
func serviceMessage(err error) string {
	var je *jobs.Error
	if errors.As(err, &je) {
		return je.Msg
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

func (s *Server) jobsCleanup() (JobsCleanup, error) {
	if js, ok := s.o.Jobs.(JobsCleanup); ok {
		return js, nil
	}
	return nil, internal("Jobs")
}

func (s *Server) registryCleanup() (RegistryCleanup, error) {
	if reg, ok := s.o.Registry.(RegistryCleanup); ok {
		return reg, nil
	}
	return nil, internal("The registry")
}

func (s *Server) defenderCleanup() (DefenderCleanup, error) {
	if d, ok := s.o.Defender.(DefenderCleanup); ok {
		return d, nil
	}
	return nil, internal("Device Defender")
}

type cancelExecutionIn struct {
	Thing           string            `uri:"thingName" check:"thing"`
	JobID           string            `uri:"jobId" check:"job"`
	Force           bool              `query:"force"`
	ExpectedVersion *int64            `json:"expectedVersion"`
	StatusDetails   map[string]string `json:"statusDetails"`
}

// cancelJobExecution serves CancelJobExecution:
// PUT /things/{thingName}/jobs/{jobId}/cancel?force=.
func (s *Server) cancelJobExecution(_ *call, in *cancelExecutionIn) (any, error) {
	js, err := s.jobsCleanup()
	if err != nil {
		return nil, err
	}
	return nil, js.CancelJobExecution(in.Thing, in.JobID, in.Force, in.ExpectedVersion, in.StatusDetails)
}

type deleteJobIn struct {
	JobID       string `uri:"jobId" check:"job"`
	Force       bool   `query:"force"`
	NamespaceID string `query:"namespaceId"`
}

// deleteJob serves DeleteJob: DELETE /jobs/{jobId}?force=.
func (s *Server) deleteJob(_ *call, in *deleteJobIn) (any, error) {
	js, err := s.jobsCleanup()
	if err != nil {
		return nil, err
	}
	return nil, js.DeleteJob(in.JobID, in.Force)
}

type deleteExecutionIn struct {
	Thing           string `uri:"thingName" check:"thing"`
	JobID           string `uri:"jobId" check:"job"`
	ExecutionNumber int64  `uri:"executionNumber"`
	Force           bool   `query:"force"`
	NamespaceID     string `query:"namespaceId"`
}

func (in *deleteExecutionIn) validate() error {
	if in.ExecutionNumber < 0 {
		return validation(strconv.FormatInt(in.ExecutionNumber, 10), "executionNumber", "Member must have value greater than or equal to 0")
	}
	return nil
}

// deleteJobExecution serves DeleteJobExecution:
// DELETE /things/{thingName}/jobs/{jobId}/executionNumber/{executionNumber}?force=.
func (s *Server) deleteJobExecution(_ *call, in *deleteExecutionIn) (any, error) {
	js, err := s.jobsCleanup()
	if err != nil {
		return nil, err
	}
	return nil, js.DeleteJobExecution(in.Thing, in.JobID, in.ExecutionNumber, in.Force)
}

type deleteCertificateIn struct {
	ID          string `uri:"certificateId" check:"cert"`
	ForceDelete bool   `query:"forceDelete"`
}

// deleteCertificate serves DeleteCertificate:
// DELETE /certificates/{certificateId}?forceDelete=. An ACTIVE certificate
// gives CertificateStateException; one attached to a thing, or (without
// forceDelete) to policies, DeleteConflictException.
func (s *Server) deleteCertificate(_ *call, in *deleteCertificateIn) (any, error) {
	reg, err := s.registryCleanup()
	if err != nil {
		return nil, err
	}
	del := reg.DeleteCertificate
	if in.ForceDelete {
		del = reg.ForceDeleteCertificate
	}
	return nil, del(strings.ToLower(in.ID))
}

type deletePolicyIn struct {
	Name string `uri:"policyName" check:"policy"`
}

// deletePolicy serves DeletePolicy: DELETE /policies/{policyName};
// DeleteConflictException while the policy is attached.
func (s *Server) deletePolicy(_ *call, in *deletePolicyIn) (any, error) {
	reg, err := s.registryCleanup()
	if err != nil {
		return nil, err
	}
	return nil, reg.DeletePolicy(in.Name)
}

type deleteThingGroupIn struct {
	Name            string `uri:"thingGroupName" check:"thing"`
	ExpectedVersion *int64 `query:"expectedVersion"`
}

// deleteThingGroup serves DeleteThingGroup:
// DELETE /thing-groups/{thingGroupName}?expectedVersion=. Deleting a group
// that does not exist succeeds, as on AWS.
func (s *Server) deleteThingGroup(_ *call, in *deleteThingGroupIn) (any, error) {
	reg, err := s.registryCleanup()
	if err != nil {
		return nil, err
	}
	if err := reg.DeleteThingGroup(in.Name, in.ExpectedVersion); err != nil && !errors.Is(err, registry.ErrNotFound) {
		return nil, err
	}
	return nil, nil
}

// thingGroupMemberIn is the body of Add/RemoveThingToThingGroup; group and
// thing are the names, from the name or ARN fields.
type thingGroupMemberIn struct {
	ThingGroupName string `json:"thingGroupName"`
	ThingGroupARN  string `json:"thingGroupArn"`
	ThingName      string `json:"thingName"`
	ThingARN       string `json:"thingArn"`
	group, thing   string
}

func (in *thingGroupMemberIn) validate() error {
	in.group = nameFromARN(in.ThingGroupName, in.ThingGroupARN, "thinggroup")
	in.thing = nameFromARN(in.ThingName, in.ThingARN, "thing")
	if in.group == "" {
		return invalid("Either thingGroupName or thingGroupArn must be given")
	}
	if in.thing == "" {
		return invalid("Either thingName or thingArn must be given")
	}
	if err := checkThingName("thingGroupName", in.group); err != nil {
		return err
	}
	return checkThingName("thingName", in.thing)
}

// removeThingFromThingGroup serves RemoveThingFromThingGroup:
// PUT /thing-groups/removeThingFromThingGroup.
func (s *Server) removeThingFromThingGroup(_ *call, in *thingGroupMemberIn) (any, error) {
	reg, err := s.registryCleanup()
	if err != nil {
		return nil, err
	}
	return nil, reg.RemoveThingFromThingGroup(in.group, in.thing)
}

type profileTargetIn struct {
	Name   string `uri:"securityProfileName" check:"profile"`
	Target string `query:"securityProfileTargetArn"`
}

func (in *profileTargetIn) validate() error {
	if in.Target == "" {
		return required("securityProfileTargetArn")
	}
	return nil
}

// detachSecurityProfile serves DetachSecurityProfile:
// DELETE /security-profiles/{name}/targets?securityProfileTargetArn=.
func (s *Server) detachSecurityProfile(_ *call, in *profileTargetIn) (any, error) {
	d, err := s.defenderCleanup()
	if err != nil {
		return nil, err
	}
	return nil, d.DetachSecurityProfile(in.Name, in.Target)
}

type deleteProfileIn struct {
	Name            string `uri:"securityProfileName" check:"profile"`
	ExpectedVersion *int64 `query:"expectedVersion"`
}

// deleteSecurityProfile serves DeleteSecurityProfile:
// DELETE /security-profiles/{name}?expectedVersion=.
func (s *Server) deleteSecurityProfile(_ *call, in *deleteProfileIn) (any, error) {
	d, err := s.defenderCleanup()
	if err != nil {
		return nil, err
	}
	return nil, d.DeleteSecurityProfile(in.Name, in.ExpectedVersion)
}

type listProfilesIn struct {
	DimensionName string `query:"dimensionName"`
	MetricName    string `query:"metricName"`
}

func (in *listProfilesIn) validate() error {
	if in.DimensionName != "" && in.MetricName != "" {
		return invalid("Only one of dimensionName and metricName may be given")
	}
	return nil
}

type profileIdentifier struct {
	Name string `json:"name"`
	ARN  string `json:"arn"`
}

// listSecurityProfiles serves ListSecurityProfiles: GET /security-profiles,
// paged by nextToken/maxResults, optionally only the profiles using a
// metric.
func (s *Server) listSecurityProfiles(c *call, in *listProfilesIn) (any, error) {
	d, err := s.defenderCleanup()
	if err != nil {
		return nil, err
	}
	all := d.ListSecurityProfiles()
	if in.MetricName != "" || in.DimensionName != "" {
		all = slices.DeleteFunc(all, func(p defender.SecurityProfile) bool {
			return !slices.ContainsFunc(p.Behaviors, func(b defender.Behavior) bool {
				return in.MetricName != "" && b.Metric == in.MetricName ||
					in.DimensionName != "" && b.MetricDimension != nil && strings.Contains(string(*b.MetricDimension), `"`+in.DimensionName+`"`)
			})
		})
	}
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return nil, err
	}
	out := make([]profileIdentifier, 0, end-start)
	for _, p := range all[start:end] {
		out = append(out, profileIdentifier{p.Name, p.ARN})
	}
	return struct {
		Identifiers []profileIdentifier `json:"securityProfileIdentifiers"`
		NextToken   string              `json:"nextToken,omitempty"`
	}{out, next}, nil
}

type listProfileTargetsIn struct {
	Name string `uri:"securityProfileName" check:"profile"`
}

// listTargetsForSecurityProfile serves ListTargetsForSecurityProfile:
// GET /security-profiles/{name}/targets, paged by nextToken/maxResults.
func (s *Server) listTargetsForSecurityProfile(c *call, in *listProfileTargetsIn) (any, error) {
	d, err := s.defender()
	if err != nil {
		return nil, err
	}
	p, err := d.DescribeSecurityProfile(in.Name)
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(len(p.Targets), c.query, "nextToken", "maxResults", 250, 250)
	if err != nil {
		return nil, err
	}
	type target struct {
		ARN string `json:"arn"`
	}
	out := make([]target, 0, end-start)
	for _, t := range p.Targets[start:end] {
		out = append(out, target{t})
	}
	return struct {
		Targets   []target `json:"securityProfileTargets"`
		NextToken string   `json:"nextToken,omitempty"`
	}{out, next}, nil
}

type listCAsIn struct {
	Ascending    bool   `query:"isAscendingOrder"`
	TemplateName string `query:"templateName" check:"template"`
}

// listCACertificates serves ListCACertificates: GET /cacertificates,
// paged by marker/pageSize, newest first unless isAscendingOrder=true.
func (s *Server) listCACertificates(c *call, in *listCAsIn) (any, error) {
	reg, err := s.registryCleanup()
	if err != nil {
		return nil, err
	}
	cas, err := reg.ListCACertificates()
	if err != nil {
		return nil, err
	}
	if in.TemplateName != "" { // iotsim keeps no template names on CAs: none match
		cas = nil
	}
	slices.SortFunc(cas, func(a, b registry.CACertificate) int {
		r := cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
		if !in.Ascending {
			r = -r
		}
		return r
	})
	start, end, next, err := page(len(cas), c.query, "marker", "pageSize", 25, 250)
	if err != nil {
		return nil, err
	}
	type caSummary struct {
		CertificateARN string `json:"certificateArn"`
		CertificateID  string `json:"certificateId"`
		Status         string `json:"status"`
		CreationDate   epoch  `json:"creationDate,omitzero"`
	}
	out := make([]caSummary, 0, end-start)
	for _, ca := range cas[start:end] {
		out = append(out, caSummary{ca.ARN, ca.ID, ca.Status, epoch(ca.CreatedAt)})
	}
	return struct {
		Certificates []caSummary `json:"certificates"`
		NextMarker   string      `json:"nextMarker,omitempty"`
	}{out, next}, nil
}

type listByCAIn struct {
	CAID      string `uri:"caCertificateId" check:"cert"`
	Ascending bool   `query:"isAscendingOrder"`
}

// listCertificatesByCA serves ListCertificatesByCA:
// GET /certificates-by-ca/{caCertificateId}, paged by marker/pageSize,
// newest first unless isAscendingOrder=true. An unknown CA has none.
func (s *Server) listCertificatesByCA(c *call, in *listByCAIn) (any, error) {
	reg, err := s.registry()
	if err != nil {
		return nil, err
	}
	all, err := reg.ListCertificates()
	if err != nil {
		return nil, err
	}
	id := strings.ToLower(in.CAID)
	certs := slices.DeleteFunc(slices.Clone(all), func(ct registry.Certificate) bool { return ct.CAID != id })
	return s.certificatePage(c, certs, in.Ascending)
}
