package provisioning

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/iotagent/iotagent/cloud/registry"
)

// Names of what Setup creates.
const (
	// DevicePolicyName is the policy the default template attaches to the
	// certificates it registers.
	DevicePolicyName = "iotsim-device"
	// ClaimPolicyName is the claim certificate's provisioning-only policy.
	ClaimPolicyName = "iotsim-claim"
)

// DevicePolicyDocument lets a thing connect as itself and use its own
// shadow, jobs and application topics (telemetry/, alarms/, warnings/),
// and renew its certificate (agent/rotate: CreateCertificateFromCsr, then
// RegisterThing with the default template, over its own connection).
// Which thing a RegisterThing names is in its payload, which no IoT policy
// can see: the default template's pre-provisioning check
// (TakeoverGuardFunction) refuses a device that names another thing.
const DevicePolicyDocument = `{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": ["arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/*",
                  "arn:aws:iot:*:*:topic/telemetry/${iot:Connection.Thing.ThingName}",
                  "arn:aws:iot:*:*:topic/alarms/${iot:Connection.Thing.ThingName}",
                  "arn:aws:iot:*:*:topic/warnings/${iot:Connection.Thing.ThingName}",
                  "arn:aws:iot:*:*:topic/$aws/certificates/create-from-csr/json*",
                  "arn:aws:iot:*:*:topic/$aws/provisioning-templates/iotsim-fleet/provision/json*"]},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*",
                  "arn:aws:iot:*:*:topicfilter/$aws/certificates/create-from-csr/json/*",
                  "arn:aws:iot:*:*:topicfilter/$aws/provisioning-templates/iotsim-fleet/provision/json/*"]}
  ]
}`

// ClaimClientIDPrefix starts the client ids that the claim policy allows:
// the agent provisions as "provision-<SerialNumber>".
const ClaimClientIDPrefix = "provision-"

// ClaimPolicyDocument is the claim certificate's policy for a template
// (spec §5): connect with a client id provision-*, and the three fleet
// provisioning APIs. The client id keeps the claim from taking over a
// device's persistent session (client id = thing name).
func ClaimPolicyDocument(template string) string {
	return `{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/` + ClaimClientIDPrefix + `*"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": ["arn:aws:iot:*:*:topic/$aws/certificates/create/*",
                  "arn:aws:iot:*:*:topic/$aws/certificates/create-from-csr/*",
                  "arn:aws:iot:*:*:topic/$aws/provisioning-templates/` + template + `/provision/*"]},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["arn:aws:iot:*:*:topicfilter/$aws/certificates/create/*",
                  "arn:aws:iot:*:*:topicfilter/$aws/certificates/create-from-csr/*",
                  "arn:aws:iot:*:*:topicfilter/$aws/provisioning-templates/` + template + `/provision/*"]}
  ]
}`
}

// DefaultTemplateBody is the body of iotsim's default template: it takes a
// SerialNumber parameter, names the thing after it (attribute
// serialNumber, merged into an existing thing's attributes), activates the
// certificate and, when withPolicy is set, attaches DevicePolicyName.
func DefaultTemplateBody(withPolicy bool) string {
	resources := map[string]any{
		"thing": map[string]any{
			"Type": TypeThing,
			"Properties": map[string]any{
				"ThingName":        map[string]any{"Ref": "SerialNumber"},
				"AttributePayload": map[string]any{"serialNumber": map[string]any{"Ref": "SerialNumber"}},
			},
			"OverrideSettings": map[string]any{"AttributePayload": OverrideMerge},
		},
		"certificate": map[string]any{
			"Type": TypeCertificate,
			"Properties": map[string]any{
				"CertificateId": map[string]any{"Ref": CertificateIDParameter},
				"Status":        "ACTIVE",
			},
		},
	}
	if withPolicy {
		resources["policy"] = map[string]any{
			"Type":       TypePolicy,
			"Properties": map[string]any{"PolicyName": DevicePolicyName},
		}
	}
	b, _ := json.MarshalIndent(map[string]any{
		"Parameters": map[string]any{
			"SerialNumber":         map[string]any{"Type": "String"},
			CertificateIDParameter: map[string]any{"Type": "String"},
		},
		"Resources":           resources,
		"DeviceConfiguration": map[string]any{},
	}, "", "  ")
	return string(b)
}

// TemplateCreator stores templates. *registry.Registry satisfies it.
type TemplateCreator interface {
	Region() string
	Account() string
	CreateProvisioningTemplate(t registry.ProvisioningTemplate) (registry.ProvisioningTemplate, error)
}

// Setup creates, if missing, the default template named template, the
// device policy and the claim policy, and attaches the claim policy to
// claimCertARN. pol nil skips the policies. It is idempotent.
func Setup(reg TemplateCreator, pol Policies, template, claimCertARN string) error {
	if pol != nil {
		for name, doc := range map[string]string{DevicePolicyName: DevicePolicyDocument, ClaimPolicyName: ClaimPolicyDocument(template)} {
			if err := pol.CreatePolicy(name, doc); err != nil && !errors.Is(err, registry.ErrExists) {
				return fmt.Errorf("create policy %s: %w", name, err)
			}
		}
		if claimCertARN != "" {
			if err := pol.AttachPolicy(ClaimPolicyName, claimCertARN); err != nil {
				return fmt.Errorf("attach policy %s to the claim certificate: %w", ClaimPolicyName, err)
			}
		}
	}
	_, err := reg.CreateProvisioningTemplate(registry.ProvisioningTemplate{
		Name: template,
		Description: "iotsim default fleet provisioning template: the thing is named after the SerialNumber parameter; " +
			"the pre-provisioning check refuses a thing that has another ACTIVE certificate, except to that thing's own connection (rotation)",
		Body:    DefaultTemplateBody(pol != nil),
		Enabled: true,
		RoleARN: "arn:aws:iam::" + reg.Account() + ":role/iotsim-provisioning",
		Type:    registry.TemplateTypeFleetProvisioning,
		Hook:    &registry.ProvisioningHook{TargetARN: TakeoverGuardARN(reg.Region(), reg.Account()), PayloadVersion: HookPayloadVersion},
	})
	if err != nil && !errors.Is(err, registry.ErrExists) {
		return fmt.Errorf("create provisioning template %s: %w", template, err)
	}
	return nil
}
