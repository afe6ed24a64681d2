// Package shadow is iotsim's AWS IoT Device Shadow service: classic and named
// shadows per thing, with the MQTT request/response topics
// ($aws/things/T/shadow[/name/S]/{update,get,delete}[/accepted|/rejected],
// update/delta, update/documents), the merge, delta and metadata rules, the
// version lock, the limits and the error documents of shared/spec/shadow.md.
//
// Service.Update, Get and Delete are shared by the MQTT path
// (Service.HandleRequest, called by the broker for every device PUBLISH) and
// the REST data plane. Documents live in the "shadows" bucket of a
// store.DB, so they survive a restart. Merge and Delta are the pure document
// functions, exported for tests and benchmarks.
package shadow
