// Package e2e holds the OTA end-to-end tests (its _test.go files): two
// versions of the real iotagent, built with their versions stamped, run
// under a systemd-like supervisor (ota/otatest) against iotsim, updated
// by jobs created with the real aws CLI; the failures that must end with
// the old version running and the job FAILED with a reason; a download
// cut off mid-way that resumes with a Range request; and kill -9 at
// random points of whole updates.
//
// The tests build amd64 binaries and run real processes, so they are
// skipped with -short. Flags: -e2e.killruns (updates interrupted by kill
// -9, default 50; make test-ota-long runs 200), -e2e.parallel (how many of
// them at once), -e2e.logs (print every agent's output).
package e2e
