// Package registry is iotsim's thing and certificate registry: the part of
// the AWS IoT control plane that CreateThing, DescribeThing,
// RegisterCertificate, UpdateCertificate and AttachThingPrincipal manage,
// and that the broker consults on every CONNECT (is this certificate
// registered and ACTIVE, which things is it attached to).
//
// State lives in the simulator's bbolt database (cloud/store) and survives a
// restart. WatchCertificates lets the broker drop connections as soon as a
// certificate leaves ACTIVE.
package registry
