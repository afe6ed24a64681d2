package provisioning_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud/registry"
)

// TestRegisterThingIsAtomic makes the last steps of RegisterThing fail and
// checks that none of the earlier ones is left behind: the policy the
// template creates, the thing, the certificate's attachments and status.
func TestRegisterThingIsAtomic(t *testing.T) {
	sim, _ := startSim(t)
	reg := sim.Registry()
	if _, err := reg.CreateThingGroup("real-group", nil); err != nil {
		t.Fatal(err)
	}
	const body = `{"Parameters":{"SerialNumber":{"Type":"String"},"Group":{"Type":"String"},"AWS::IoT::Certificate::Id":{"Type":"String"}},
	 "Resources":{
	  "policy":{"Type":"AWS::IoT::Policy","Properties":{"PolicyName":{"Fn::Join":["-",["pol",{"Ref":"SerialNumber"}]]},
	   "PolicyDocument":"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"*\"}]}"}},
	  "thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Ref":"SerialNumber"},"ThingGroups":[{"Ref":"Group"}]}},
	  "certificate":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":{"Ref":"AWS::IoT::Certificate::Id"},"Status":"ACTIVE"}}}}`
	if _, err := reg.CreateProvisioningTemplate(registry.ProvisioningTemplate{
		Name: "atomic", Body: body, Enabled: true, RoleARN: "arn:aws:iam::123456789012:role/x",
	}); err != nil {
		t.Fatal(err)
	}
	allowTemplate(t, sim, "atomic")
	claim := connectClaim(t, sim, "provision-claim-atomic")
	const base = "$aws/provisioning-templates/atomic/provision"

	tests := []struct {
		name, serial, group string
		before              func(t *testing.T, certID string)
		wantCode            string
		wantStatus          string // of the certificate afterwards
	}{
		{
			// The thing group is checked after the policy and the thing
			// are created.
			name: "unknown thing group", serial: "atomic-1", group: "no-such-group",
			wantCode: "InvalidParameters", wantStatus: registry.StatusPendingActivation,
		},
		{
			// The status is set last, after the attachments.
			name: "certificate revoked meanwhile", serial: "atomic-2", group: "real-group",
			before: func(t *testing.T, certID string) {
				if err := reg.UpdateCertificate(certID, registry.StatusRevoked); err != nil {
					t.Fatal(err)
				}
			},
			wantCode: "InternalFailure", wantStatus: registry.StatusRevoked,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, b := claim.request("$aws/certificates/create", "json", []byte("{}"))
			var cr createResp
			decodeAs(t, "json", b, &cr)
			if cr.CertificateID == "" {
				t.Fatalf("create: %s", b)
			}
			if tc.before != nil {
				tc.before(t, cr.CertificateID)
			}
			outcome, b := claim.request(base, "json", encodeAs(t, "json", registerReq{cr.Token, map[string]string{"SerialNumber": tc.serial, "Group": tc.group}}))
			var e errResp
			decodeAs(t, "json", b, &e)
			if outcome != "rejected" || e.ErrorCode != tc.wantCode {
				t.Fatalf("RegisterThing: %s %s, want rejected %s", outcome, b, tc.wantCode)
			}
			if _, err := reg.DescribeThing(tc.serial); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("thing %s after the failure: err %v, want ErrNotFound", tc.serial, err)
			}
			if _, err := reg.GetPolicy("pol-" + tc.serial); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("policy pol-%s after the failure: err %v, want ErrNotFound", tc.serial, err)
			}
			c, err := reg.DescribeCertificate(cr.CertificateID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(struct {
				Status string
				Things []string
			}{tc.wantStatus, nil}, struct {
				Status string
				Things []string
			}{c.Status, c.Things}); diff != "" {
				t.Errorf("certificate after the failure (-want +got):\n%s", diff)
			}
			if ps, err := reg.AttachedPolicies(c.ARN); err != nil || len(ps) != 0 {
				t.Errorf("policies attached to the certificate: %v, %v", ps, err)
			}
		})
	}
}
