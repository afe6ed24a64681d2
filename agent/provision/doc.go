// Package provision is the agent's fleet provisioning client
// (shared/spec/provisioning.md): with an MQTT connection made with the claim
// certificate it obtains a device certificate — CreateCertificateFromCsr
// when the key lives in the key store (a TPM key never leaves it),
// CreateKeysAndCertificate otherwise — registers the thing with
// RegisterThing, and persists the identity.
//
// Everything lives in STATE_DIR/identity (0700). The state machine, whose
// every transition is one atomic file write, so that a crash between any
// two steps resumes cleanly on the next start:
//
//	no files                      -> (key store key generated if missing, itself atomic)
//	                                 create the certificate ->
//	progress.json {cert, token}   -> (parameters saved in progress.json) ->
//	progress.json {+parameters}   -> RegisterThing ->
//	device.crt (+ device.key)     -> identity.json (the commit point) ->
//	identity.json                 -> progress.json removed.
//
// On start: identity.json present means provisioned (a leftover
// progress.json is removed). Otherwise a progress.json with parameters means
// RegisterThing may have been sent: it is sent again with the same token
// and parameters, and the service answers an identical retry with the same
// result (iotsim does; see cloud/provisioning), so a lost answer never leads
// to a second registered certificate. A progress.json without parameters
// resumes at RegisterThing with the current parameters. A crash before
// progress.json exists loses at most a certificate that was never
// activated, which the service deletes when its token expires. A token
// rejected as invalid (expired, or forgotten by a restarted service) drops
// progress.json and starts over once. A permanent rejection keeps the
// certificate but forgets the parameters, so a fixed configuration can try
// again within the token's hour; so does a failure before RegisterThing was
// sent (fleetapi.ErrNotSent: a claim policy that does not allow the template
// closes the connection at its SUBSCRIBE).
//
// progress.json records the claim (Options.Claim) and, once RegisterThing
// may have been sent, the template and parameters. A call with another
// claim, or with another template or parameters after that point, is
// refused with a *MismatchError rather than resumed: sending other
// parameters with the same certificate could register a second thing.
// Options.Restart (iotagent provision --restart), or deleting the file,
// starts over with a new certificate.
//
// Rejections are *RejectedError; Retryable (429, 5xx) tells the caller to
// back off and call Provision again.
package provision
