// Package rotate renews the device certificate before it expires, over the
// device's own MQTT connection, with a new key, so that the device never
// loses its identity (issue "Identity" part 7).
//
// The flow works unchanged on AWS IoT Core and on iotsim:
//
//  1. A new key in a slot other than the current key's: for the file key
//     store another PEM file (device-a.key and device-b.key alternate), for
//     the TPM a second persistent handle (two handles alternate).
//  2. CreateCertificateFromCsr ($aws/certificates/create-from-csr/json) on
//     the current connection: a certificate for the new key,
//     PENDING_ACTIVATION, with an ownership token.
//  3. RegisterThing ($aws/provisioning-templates/T/provision/json) with
//     that token and the device's usual parameters: the fleet template
//     finds the existing thing (OverrideSettings keep it), attaches the
//     new certificate to it, attaches the device policy and activates the
//     certificate. The device policy must allow these two APIs' topics
//     (provisioning.DevicePolicyDocument does; see docs/manufacturing.md
//     for AWS, including the pre-provisioning hook that pins the
//     parameters to the caller's client id).
//  4. Verify: one MQTT connection with the new certificate and the thing
//     name as client id, CleanSession=0, CONNECT then DISCONNECT. AWS (and
//     iotsim) allow one connection per client id, so this takes the
//     session over from the running connection, which is dropped
//     (DUPLICATE_CLIENTID); the persistent session survives for the
//     agent's reconnect.
//  5. Commit: STATE_DIR/identity/rotated.json names the new certificate
//     and key, written atomically. This is the switch. The caller then
//     restarts its transport with Load's identity, and reports
//     Result.OldCertificateID so that the old certificate can be
//     deactivated (the device policy does not allow UpdateCertificate).
//
// Until the commit the old identity stays the one in use, and every step
// persists its outcome first (STATE_DIR/identity/rotation.json), so a
// crash anywhere resumes: before the CSR answer is saved a restart makes a
// new key in the same slot (the old slot is never touched); after it,
// RegisterThing is sent again with the same token and parameters (iotsim
// answers an identical retry with the same result; on AWS a token used
// twice is refused, the certificate stays unattached and, rejected as an
// invalid token, the flow starts over once with a new key); after
// RegisterThing, Verify runs again. The old key is left in its slot until
// the next rotation replaces it.
package rotate
