// Package policy is iotsim's AWS IoT policy engine: it parses and validates
// IoT policy documents (the IAM grammar: Effect, Action/NotAction,
// Resource/NotResource, Condition) and evaluates a request (an action, a
// resource ARN and the connection's policy variables) against a set of
// documents the way AWS IoT Core does: default deny, an explicit Deny wins.
//
// Resources and actions match with IAM globbing over the whole string: `*`
// is any run of characters (it crosses `/`), `?` is exactly one character,
// and MQTT's `+` and `#` are literal. `${*}`, `${?}` and `${$}` are a
// literal `*`, `?` and `$`. Policy variables (`${iot:ClientId}`,
// `${iot:Connection.Thing.ThingName}`, `${iot:Certificate.Subject.CommonName}`,
// ...) are substituted in Resource and Condition values when the document's
// Version is 2012-10-17; a variable that cannot be resolved, or whose value
// contains one of `* $ + ? #` or is longer than 1024 characters, stays as its
// literal `${...}` text, so it cannot match a real resource.
//
// The package depends on nothing else in iotsim: callers supply the
// variables (see Vars) and cache parsed documents.
package policy
