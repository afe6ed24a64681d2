// Package jobs is iotsim's AWS IoT Jobs service, per spec/jobs.md.
//
// The device side is MQTT: HandleRequest answers, through the broker, the
// requests a device publishes under $aws/things/THING/jobs/ (get,
// start-next, JOB/get, $next/get, JOB/update). Answers go to the
// requesting client only (Options.PublishTo); the notify and notify-next
// events are ordinary publishes (Options.Publish), sent only when the
// thing's set of pending executions, or its head, changes.
//
// The control side is a Go API that the REST control plane (cloud/api)
// fronts: CreateJob (things and thing groups as targets; document or
// documentSource; presignedUrlConfig; timeoutConfig), DescribeJob,
// GetJobDocument, CancelJob (with force), ListJobs, DescribeJobExecution,
// ListJobExecutionsForJob and ListJobExecutionsForThing.
//
// Job documents may hold ${aws:iot:s3-presigned-url:S3-URL} placeholders:
// every time a device is sent the document (start-next, JOB/get,
// $next/get, update with includeJobDocument, notify-next) each one is
// replaced by a fresh presigned URL of iotsim's object store (Files); the
// control plane always returns the document as created.
//
// Executions time out (TIMED_OUT) when their step timer
// (stepTimeoutInMinutes) or the job's in-progress timer
// (timeoutConfig.inProgressTimeoutInMinutes) runs out; Run checks the
// timers on every tick of Options.Ticks (a time.Ticker by default), and
// CheckTimeouts does it at once. Jobs and executions live in the store
// database and survive a restart.
//
// Not implemented: retries (jobExecutionsRetryConfig), rollout and abort
// configs (accepted, ignored), CONTINUOUS targeting of things added to a
// group after the job was created, job templates, namespaces, deletion.
package jobs
