package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/defender"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/store"
)

// newDefender is a Device Defender service on its own database.
func newDefender(t *testing.T, now func() time.Time) *defender.Service {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "dd.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	svc, err := defender.New(defender.Options{
		DB: db, Registry: registry.New(db, "us-east-1", "123456789012", now),
		Publish: func(string, []byte) {}, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func ddReport(id, tcpTotal int) []byte {
	return fmt.Appendf(nil, `{"header":{"report_id":%d,"version":"1.0"},"metrics":{"listening_tcp_ports":{"ports":[],"total":%d}}}`, id, tcpTotal)
}

func TestDefenderAWSCLI(t *testing.T) {
	t.Parallel()
	svc := newDefender(t, time.Now)
	e := newEnvClock(t, time.Now, func(o *Options) { o.Defender = svc })
	hs := httptest.NewServer(e.srv)
	t.Cleanup(hs.Close)
	cli := newAWSCLI(t, hs.URL)
	const behaviors = `[{"name":"few-ports","metric":"aws:num-listening-tcp-ports",` +
		`"criteria":{"comparisonOperator":"less-than","value":{"count":3},"consecutiveDatapointsToAlarm":1,"consecutiveDatapointsToClear":1}}]`

	var created map[string]string
	cli.ok(&created, "iot", "create-security-profile", "--security-profile-name", "ports",
		"--security-profile-description", "few listeners", "--behaviors", behaviors)
	if diff := cmp.Diff(map[string]string{"securityProfileName": "ports",
		"securityProfileArn": "arn:aws:iot:us-east-1:123456789012:securityprofile/ports"}, created); diff != "" {
		t.Errorf("create-security-profile (-want +got):\n%s", diff)
	}
	cli.fails("ResourceAlreadyExistsException", "iot", "create-security-profile", "--security-profile-name", "ports")
	cli.fails("InvalidRequestException", "iot", "create-security-profile", "--security-profile-name", "bad",
		"--behaviors", `[{"name":"b","metric":"aws:num-listening-tcp-ports","criteria":{"comparisonOperator":"in-port-set","value":{"ports":[22]}}}]`)

	var desc map[string]any
	cli.ok(&desc, "iot", "describe-security-profile", "--security-profile-name", "ports")
	if desc["securityProfileDescription"] != "few listeners" || desc["version"] != float64(1) {
		t.Errorf("describe-security-profile: %v", desc)
	}
	if b, _ := desc["behaviors"].([]any); len(b) != 1 {
		t.Errorf("behaviors = %v", desc["behaviors"])
	}
	if s, _ := desc["creationDate"].(string); !strings.HasPrefix(s, "20") { // the CLI prints the epoch number it got as ISO
		t.Errorf("creationDate = %v, want a timestamp", desc["creationDate"])
	}
	cli.fails("ResourceNotFoundException", "iot", "describe-security-profile", "--security-profile-name", "nope")

	cli.ok(nil, "iot", "attach-security-profile", "--security-profile-name", "ports",
		"--security-profile-target-arn", "arn:aws:iot:us-east-1:123456789012:all/things")
	cli.fails("InvalidRequestException", "iot", "attach-security-profile", "--security-profile-name", "ports",
		"--security-profile-target-arn", "arn:aws:iot:us-east-1:123456789012:thing/x")
	cli.fails("ResourceNotFoundException", "iot", "attach-security-profile", "--security-profile-name", "nope",
		"--security-profile-target-arn", "arn:aws:iot:us-east-1:123456789012:all/things")

	// Three things in alarm, one cleared again: pagination is exercised with page size 1.
	topic := func(thing string) string { return "$aws/things/" + thing + "/defender/metrics/json" }
	for i, thing := range []string{"t1", "t2", "t3"} {
		svc.HandleReport(nil, topic(thing), ddReport(10+i, 7))
	}
	svc.HandleReport(nil, topic("t3"), ddReport(20, 1))

	var active struct {
		ActiveViolations []struct {
			ThingName          string
			Behavior           struct{ Name string }
			LastViolationValue struct{ Count int }
			ViolationStartTime string
		}
	}
	cli.ok(&active, "iot", "list-active-violations", "--security-profile-name", "ports", "--page-size", "1")
	if len(active.ActiveViolations) != 2 {
		t.Fatalf("list-active-violations: %+v", active)
	}
	for i, v := range active.ActiveViolations {
		if v.ThingName != []string{"t1", "t2"}[i] || v.Behavior.Name != "few-ports" || v.LastViolationValue.Count != 7 || v.ViolationStartTime == "" {
			t.Errorf("active violation %d: %+v", i, v)
		}
	}
	var events struct {
		ViolationEvents []struct {
			ThingName, ViolationEventType string
			MetricValue                   struct{ Count int }
		}
	}
	start := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	end := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	cli.ok(&events, "iot", "list-violation-events", "--start-time", start, "--end-time", end, "--thing-name", "t3", "--page-size", "1")
	var got []string
	for _, ev := range events.ViolationEvents {
		got = append(got, fmt.Sprintf("%s %s %d", ev.ThingName, ev.ViolationEventType, ev.MetricValue.Count))
	}
	if diff := cmp.Diff([]string{"t3 in-alarm 7", "t3 alarm-cleared 1"}, got); diff != "" {
		t.Errorf("list-violation-events (-want +got):\n%s", diff)
	}
	_, errs, code := cli.run("iot", "list-violation-events", "--start-time", start)
	if code == 0 || !strings.Contains(errs, "end-time") {
		t.Errorf("list-violation-events without --end-time: exit %d, %s", code, errs)
	}
}

func TestDefenderRESTErrors(t *testing.T) {
	svc := newDefender(t, func() time.Time { return testNow })
	e := newEnv(t, func(o *Options) { o.Defender = svc })
	r := e.do(t, http.MethodGet, "/violation-events?startTime=yesterday&endTime=2024-01-01T00:00:00Z", nil)
	e.wantError(t, r, http.StatusBadRequest, "InvalidRequestException")
	r = e.do(t, http.MethodGet, "/violation-events?startTime=2024-01-01T00:00:00.5Z&endTime=1717243200", nil)
	if r.Status != http.StatusOK {
		t.Errorf("fractional and epoch timestamps: %d %s", r.Status, r.Body)
	}
	r = e.do(t, http.MethodPost, "/security-profiles/x", []byte(`{"behaviors":[]}`))
	if r.Status != http.StatusOK {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	r = e.do(t, http.MethodGet, "/security-profiles/x", nil)
	var d map[string]any
	r.json(t, &d)
	if d["creationDate"] != float64(testNow.Unix()) || d["lastModifiedDate"] != float64(testNow.Unix()) {
		t.Errorf("describe: %s, want epoch-second timestamps", r.Body)
	}
	r = e.do(t, http.MethodPost, "/security-profiles/x", []byte(`{"behaviors":`))
	e.wantError(t, r, http.StatusBadRequest, "InvalidRequestException")
	r = e.do(t, http.MethodPut, "/security-profiles/x/targets", nil)
	e.wantError(t, r, http.StatusBadRequest, "InvalidRequestException")
	r = e.do(t, http.MethodGet, "/security-profiles/"+strings.Repeat("a", 129), nil)
	e.wantError(t, r, http.StatusBadRequest, "InvalidRequestException")

	none := newEnv(t, nil)
	r = none.do(t, http.MethodGet, "/active-violations", nil)
	none.wantError(t, r, http.StatusInternalServerError, "InternalFailureException")

	r = e.do(t, http.MethodGet, "/iotsim/audit?daysUntilExpiry=30", nil)
	var out struct{ Findings []defender.Finding }
	r.json(t, &out)
	if out.Findings == nil {
		t.Errorf("audit: %s, want a findings array", r.Body)
	}
}
