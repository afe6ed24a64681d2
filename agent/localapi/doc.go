// Package localapi is the agent's local API: HTTP/1.1 over a unix socket
// that only root and the members of the socket's group may open (mode
// 0660). The technician's CLI (iotagent status, sensors, shadow, logs,
// diag) is its client.
//
// Read endpoints are sections filled by providers that the agent registers
// (Server.Register): GET /v1/NAME returns one, GET /v1/status all of them
// at once, GET /v1 lists them. Actions are POST /v1/actions/NAME with an
// optional JSON body. Every answer is JSON; errors are {"error","code"}.
// A section that no provider fills (jobs, ota before those services
// exist) is 404 with code "not_provided", which the client reports as
// ErrNotProvided.
package localapi
