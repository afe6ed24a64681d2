// Package jobs is the agent's side of AWS IoT Jobs (spec/jobs.md): it
// subscribes to notify-next, asks for the next job with start-next,
// dispatches on the job document's "operation" to a registry of handlers,
// reports progress in statusDetails with a step timeout (sent to the
// service and enforced here), and ends each job SUCCEEDED, FAILED or
// REJECTED with a reason.
//
// The job in flight is persisted (STATE/jobs/inflight.json), with a marker
// its handler may set, so that a restart of the agent (an OTA switch, a
// restart-agent or reboot job) resumes and finishes it instead of running
// it again. A job that the service cancels or removes while it runs (a
// notify-next naming another head, or an update rejected as no longer
// possible) has its handler's context cancelled, which kills any process
// the handler started.
//
// Handlers in this package: reboot, restart-agent, download-file,
// run-command and ota (the glue to package ota).
package jobs
