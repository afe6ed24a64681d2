// Package api serves iotsim's AWS IoT REST APIs over HTTP: the control plane
// (`aws iot`: things, certificates, principals, endpoint) and the data plane
// (`aws iot-data`: thing shadows and HTTP publish), with the wire conventions
// of AWS's rest-json protocol, so that the real `aws` CLI and the AWS SDKs
// work against the simulator with nothing changed but the endpoint URL.
//
// Routing follows shared/spec/control-plane-rest.md: the path is split on "/"
// while still escaped and each segment is unescaped afterwards (topics and
// names may carry %2F); colliding paths are told apart by the service named in
// the SigV4 credential scope (iot, iotdata, iotdevicegateway, iot-jobs-data).
// Errors carry the x-amzn-ErrorType header and a {"message": ...} body.
//
// Every operation is one entry of the routes table, built by op.route: its
// name, method and path, an input struct whose tags say where each field
// comes from (path label, query, header, JSON body) and which check applies,
// the call, and the mapping of the service's errors to AWS's. Decoding,
// validation, the call, error mapping and encoding happen once, in op.route,
// for all of them.
//
// Every request must carry a valid SigV4 signature (Authorization header or
// presigned query, cloud/sigv4) made with Options.Credentials; unsigned or
// wrongly signed requests get AWS's 403 errors (MissingAuthenticationToken,
// UnrecognizedClient, InvalidSignature, IncompleteSignature). Options.NoAuth
// turns verification off (iotsim serve --auth none).
//
// iotsim's own operations live under /iotsim/ (signed like the rest): the
// on-demand audit and fault injection (IotsimAddFault, IotsimListFaults,
// IotsimDeleteFault, IotsimClearFaults on /iotsim/faults, see
// broker.Fault) and the observation of a client id for `iotsim qualify`
// (IotsimWatchClient, IotsimGetObservation, IotsimUnwatchClient on
// /iotsim/observations/{clientId}, see broker.ClientObservation).
//
// Client is a small typed client for iotsim's admin subcommands.
package api
