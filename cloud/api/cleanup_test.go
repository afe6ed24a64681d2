package api

import (
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/defender"
	"github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/cloud/pki"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/store"
)

// TestCleanupAWSCLI drives the operations scripts and clean-ups need with
// the real aws CLI: each one's success, AWS's error types for the states
// that forbid it, and the pagination of the listings.
func TestCleanupAWSCLI(t *testing.T) {
	t.Parallel()
	dd := newDefender(t, time.Now)
	var js *jobs.Service
	e := newEnvClock(t, time.Now, func(o *Options) {
		db, err := store.Open(filepath.Join(t.TempDir(), "jobs.db"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if js, err = jobs.New(jobs.Options{DB: db, Registry: o.Registry.(jobs.Registry)}); err != nil {
			t.Fatal(err)
		}
		o.Jobs, o.Defender = js, dd
	})
	hs := httptest.NewServer(e.srv)
	t.Cleanup(hs.Close)
	cli := newAWSCLI(t, hs.URL)
	for _, th := range []string{"box-1", "box-2"} {
		if _, err := e.reg.CreateThing(th, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	arn := func(th string) string { return "arn:aws:iot:us-east-1:123456789012:thing/" + th }
	createJob := func(id string, things ...string) {
		t.Helper()
		var targets []string
		for _, th := range things {
			targets = append(targets, arn(th))
		}
		if _, err := js.CreateJob(jobs.CreateJobInput{JobID: id, Targets: targets, Document: `{"operation":"x"}`}); err != nil {
			t.Fatal(err)
		}
	}
	startNext := func(th string) {
		js.HandleRequest(&broker.Principal{ClientID: th, ThingName: th}, "$aws/things/"+th+"/jobs/start-next", []byte(`{}`))
	}
	status := func(th, job string) (string, bool) {
		t.Helper()
		x, err := js.DescribeJobExecution(th, job, 0)
		if err != nil {
			return "gone", false
		}
		return x.Status, x.ForceCanceled
	}

	t.Run("create-job refuses a malformed placeholder", func(t *testing.T) {
		_, errs, code := cli.run("iot", "create-job", "--job-id", "bad", "--targets", arn("box-1"),
			"--document", `{"url":"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/fwb/k"}`,
			"--presigned-url-config", `{"roleArn":"arn:aws:iam::123456789012:role/ota"}`)
		if code == 0 || !strings.Contains(errs, "(InvalidRequestException)") || !strings.Contains(errs, "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/fwb/k") {
			t.Errorf("create-job with an unterminated placeholder: exit %d, %s", code, errs)
		}
	})

	t.Run("cancel-job-execution", func(t *testing.T) {
		createJob("j1", "box-1", "box-2")
		startNext("box-1")
		cli.fails("InvalidStateTransitionException", "iot", "cancel-job-execution", "--job-id", "j1", "--thing-name", "box-1")
		cli.ok(nil, "iot", "cancel-job-execution", "--job-id", "j1", "--thing-name", "box-2", "--status-details", "reason=operator")
		if st, force := status("box-2", "j1"); st != jobs.StatusCanceled || force {
			t.Errorf("queued execution after cancel: %s force=%v", st, force)
		}
		e.wantError(t, e.do(t, "PUT", "/things/box-1/jobs/j1/cancel?force=true", []byte(`{"expectedVersion":99}`)), 409, "VersionConflictException")
		cli.ok(nil, "iot", "cancel-job-execution", "--job-id", "j1", "--thing-name", "box-1", "--force")
		if st, force := status("box-1", "j1"); st != jobs.StatusCanceled || !force {
			t.Errorf("running execution after a forced cancel: %s force=%v", st, force)
		}
		e.wantError(t, e.do(t, "PUT", "/things/box-1/jobs/j1/cancel?force=true", nil), 409, "InvalidStateTransitionException")
		e.wantError(t, e.do(t, "PUT", "/things/box-1/jobs/nope/cancel", nil), 404, "ResourceNotFoundException")
	})

	t.Run("delete-job-execution and delete-job", func(t *testing.T) {
		createJob("j2", "box-1", "box-2")
		e.wantError(t, e.do(t, "DELETE", "/things/box-1/jobs/j2/executionNumber/1", nil), 409, "InvalidStateTransitionException")
		e.wantError(t, e.do(t, "DELETE", "/things/box-1/jobs/j2/executionNumber/2?force=true", nil), 404, "ResourceNotFoundException")
		cli.ok(nil, "iot", "delete-job-execution", "--job-id", "j2", "--thing-name", "box-1", "--execution-number", "1", "--force")
		if st, _ := status("box-1", "j2"); st != "gone" {
			t.Errorf("deleted execution is %s", st)
		}
		// The job still runs on box-2: deleting it takes force.
		e.wantError(t, e.do(t, "DELETE", "/jobs/j2", nil), 409, "InvalidStateTransitionException")
		cli.ok(nil, "iot", "delete-job", "--job-id", "j2", "--force")
		e.wantError(t, e.do(t, "GET", "/jobs/j2", nil), 404, "ResourceNotFoundException")
		if got := js.ListJobExecutionsForThing("box-2", "", "j2"); len(got) != 0 {
			t.Errorf("box-2's execution of a deleted job: %v", got)
		}
		// A canceled job goes without force.
		if r := e.do(t, "DELETE", "/jobs/j1", nil); r.Status != 200 {
			t.Errorf("delete-job of a canceled job: %d %s", r.Status, r.Body)
		}
		e.wantError(t, e.do(t, "DELETE", "/jobs/j1", nil), 404, "ResourceNotFoundException")
	})

	t.Run("delete-certificate and delete-policy", func(t *testing.T) {
		id, certARN := e.mustCreateCert(t, true)
		if _, err := e.reg.CreatePolicy("dev", testPolicy); err != nil {
			t.Fatal(err)
		}
		if err := e.reg.AttachPolicy("dev", certARN); err != nil {
			t.Fatal(err)
		}
		if err := e.reg.AttachThingPrincipal("box-1", id); err != nil {
			t.Fatal(err)
		}
		cli.fails("CertificateStateException", "iot", "delete-certificate", "--certificate-id", id)
		if err := e.reg.UpdateCertificate(id, registry.StatusInactive); err != nil {
			t.Fatal(err)
		}
		e.wantError(t, e.do(t, "DELETE", "/certificates/"+id, nil), 409, "DeleteConflictException") // a thing
		if err := e.reg.DetachThingPrincipal("box-1", id); err != nil {
			t.Fatal(err)
		}
		e.wantError(t, e.do(t, "DELETE", "/certificates/"+id, nil), 409, "DeleteConflictException") // a policy
		cli.fails("DeleteConflictException", "iot", "delete-policy", "--policy-name", "dev")
		cli.ok(nil, "iot", "delete-certificate", "--certificate-id", id, "--force-delete")
		e.wantError(t, e.do(t, "GET", "/certificates/"+id, nil), 404, "ResourceNotFoundException")
		cli.ok(nil, "iot", "delete-policy", "--policy-name", "dev")
		e.wantError(t, e.do(t, "DELETE", "/policies/dev", nil), 404, "ResourceNotFoundException")
	})

	t.Run("remove-thing-from-thing-group and delete-thing-group", func(t *testing.T) {
		if _, err := e.reg.CreateThingGroup("fleet", nil); err != nil {
			t.Fatal(err)
		}
		for _, th := range []string{"box-1", "box-2"} {
			if err := e.reg.AddThingToThingGroup("fleet", th); err != nil {
				t.Fatal(err)
			}
		}
		cli.ok(nil, "iot", "remove-thing-from-thing-group", "--thing-group-name", "fleet", "--thing-name", "box-1")
		if gs, _ := e.reg.ThingGroupsOf("box-1"); len(gs) != 0 {
			t.Errorf("box-1 still in %v", gs)
		}
		e.wantError(t, e.do(t, "PUT", "/thing-groups/removeThingFromThingGroup", []byte(`{"thingGroupName":"nope","thingName":"box-1"}`)), 404, "ResourceNotFoundException")
		cli.fails("VersionConflictException", "iot", "delete-thing-group", "--thing-group-name", "fleet", "--expected-version", "7")
		cli.ok(nil, "iot", "delete-thing-group", "--thing-group-name", "fleet")
		if gs, _ := e.reg.ThingGroupsOf("box-2"); len(gs) != 0 {
			t.Errorf("box-2 still in %v after the group was deleted", gs)
		}
		if r := e.do(t, "DELETE", "/thing-groups/fleet", nil); r.Status != 200 { // gone already: AWS succeeds
			t.Errorf("delete-thing-group of a deleted group: %d %s", r.Status, r.Body)
		}
	})

	t.Run("security profiles", func(t *testing.T) {
		for _, name := range []string{"b-profile", "a-profile", "c-profile"} {
			if _, err := dd.CreateSecurityProfile(defender.SecurityProfile{Name: name}); err != nil {
				t.Fatal(err)
			}
		}
		all := "arn:aws:iot:us-east-1:123456789012:all/things"
		group := "arn:aws:iot:us-east-1:123456789012:thinggroup/fleet"
		for _, target := range []string{all, group} {
			if err := dd.AttachSecurityProfile("a-profile", target); err != nil {
				t.Fatal(err)
			}
		}
		var list struct {
			SecurityProfileIdentifiers []struct{ Name, Arn string }
			NextToken                  string
		}
		// --page-size 2: the CLI follows nextToken through two pages.
		cli.ok(&list, "iot", "list-security-profiles", "--page-size", "2")
		var names []string
		for _, p := range list.SecurityProfileIdentifiers {
			names = append(names, p.Name)
		}
		if d := cmp.Diff([]string{"a-profile", "b-profile", "c-profile"}, names); d != "" || list.NextToken != "" {
			t.Errorf("list-security-profiles (-want +got):\n%s next %q", d, list.NextToken)
		}
		var targets struct {
			SecurityProfileTargets []struct{ Arn string }
		}
		cli.ok(&targets, "iot", "list-targets-for-security-profile", "--security-profile-name", "a-profile", "--page-size", "1")
		if len(targets.SecurityProfileTargets) != 2 || targets.SecurityProfileTargets[0].Arn != all {
			t.Errorf("list-targets-for-security-profile: %+v", targets)
		}
		cli.ok(nil, "iot", "detach-security-profile", "--security-profile-name", "a-profile", "--security-profile-target-arn", all)
		e.wantError(t, e.do(t, "DELETE", "/security-profiles/a-profile/targets?securityProfileTargetArn="+url.QueryEscape(all), nil), 404, "ResourceNotFoundException")
		if p, _ := dd.DescribeSecurityProfile("a-profile"); !slices.Equal(p.Targets, []string{group}) {
			t.Errorf("targets after detach: %v", p.Targets)
		}
		e.wantError(t, e.do(t, "DELETE", "/security-profiles/a-profile?expectedVersion=5", nil), 409, "VersionConflictException")
		cli.ok(nil, "iot", "delete-security-profile", "--security-profile-name", "a-profile")
		e.wantError(t, e.do(t, "GET", "/security-profiles/a-profile", nil), 404, "ResourceNotFoundException")
	})

	t.Run("list-ca-certificates and list-certificates-by-ca", func(t *testing.T) {
		ca, err := pki.LoadOrCreateCA(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		rc, err := e.reg.RegisterCACertificate(ca.CertPEM, true, false, "")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, cn := range []string{"d1", "d2", "d3"} {
			certPEM, _, err := ca.NewKeysAndCertificate(cn)
			if err != nil {
				t.Fatal(err)
			}
			c, err := e.reg.RegisterCertificateWithCA(certPEM, registry.StatusActive)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, c.ID)
		}
		e.mustCreateCert(t, false) // not the CA's
		var cas struct {
			Certificates []struct{ CertificateId, Status string }
		}
		cli.ok(&cas, "iot", "list-ca-certificates")
		if len(cas.Certificates) != 1 || cas.Certificates[0].CertificateId != rc.ID || cas.Certificates[0].Status != "ACTIVE" {
			t.Errorf("list-ca-certificates: %+v", cas)
		}
		type page struct {
			Certificates []struct{ CertificateId string }
			NextMarker   string
		}
		var first, byCA page
		// The CLI does not follow this listing's marker: two pages by hand.
		cli.ok(&first, "iot", "list-certificates-by-ca", "--ca-certificate-id", rc.ID, "--page-size", "2", "--ascending-order")
		if len(first.Certificates) != 2 || first.NextMarker == "" {
			t.Fatalf("list-certificates-by-ca first page: %+v", first)
		}
		cli.ok(&byCA, "iot", "list-certificates-by-ca", "--ca-certificate-id", rc.ID, "--page-size", "2", "--ascending-order", "--marker", first.NextMarker)
		var got []string
		for _, c := range append(first.Certificates, byCA.Certificates...) {
			got = append(got, c.CertificateId)
		}
		slices.Sort(got)
		slices.Sort(ids)
		if d := cmp.Diff(ids, got); d != "" || byCA.NextMarker != "" {
			t.Errorf("list-certificates-by-ca (-want +got):\n%s next %q", d, byCA.NextMarker)
		}
	})
}
