// Package provisioning is iotsim's AWS IoT fleet provisioning service
// (shared/spec/provisioning.md): CreateKeysAndCertificate,
// CreateCertificateFromCsr and RegisterThing over MQTT, in JSON and CBOR,
// with AWS's topics, payloads and rejections
// ({"statusCode","errorCode","errorMessage"}).
//
// Certificates made by the two create APIs are registered
// PENDING_ACTIVATION and come with a certificate ownership token: opaque,
// bound to the certificate and to the claim certificate that asked for it,
// valid for TokenLifetime (1 hour) and single-use. A certificate whose token
// expires unused is deleted (if it was never activated nor attached).
// RegisterThing evaluates the template (template.go: Parameters, Mappings,
// Conditions, Resources, DeviceConfiguration, OverrideSettings and the
// intrinsic functions Ref, Fn::Join, Fn::Select, Fn::Split, Fn::Sub,
// Fn::FindInMap, Fn::If, Fn::Equals, Fn::And, Fn::Or, Fn::Not), after the
// template's pre-provisioning hook (a Go Hook, a webhook, or AllowList of
// serial numbers) has allowed the device, and then creates or updates the
// thing, its groups and policies, attaches them and sets the certificate's
// status (ACTIVE unless the template says INACTIVE).
//
// Differences from AWS, all deliberate:
//   - Replies go only to the requesting connection (AWS does not document
//     who receives them; create/…/accepted carries a private key).
//   - A RegisterThing that repeats an already-successful one exactly (same
//     token, same claim certificate, same parameters) gets the same accepted
//     answer again instead of InvalidCertificateOwnershipToken, for up to 24
//     hours: the answer may be lost, and a device must be able to finish
//     without registering a second certificate. Any other reuse is rejected.
//   - Tokens live in memory: after an iotsim restart they are invalid.
//   - Fn::If and Conditions are supported (the IoT docs do not list them).
//   - Thing group REPLACE adds the thing to the template's groups but does
//     not remove it from others.
package provisioning
