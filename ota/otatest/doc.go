// Package otatest helps test OTA updates with real processes.
//
// Supervisor runs the agent the way the systemd unit does: before every
// start the pre-start step from the committed slot
// (STATE/ota/committed/iotagent ota prestart --state-dir STATE), then the
// agent from the current slot (STATE/ota/current/iotagent run ARGS), both
// through the symlinks, resolved at each start as exec does for systemd;
// Restart=always with a RestartSec; Type=notify for real (a unixgram
// NOTIFY_SOCKET, READY=1, STATUS=, STOPPING=1, WATCHDOG=1 with
// WATCHDOG_USEC), TimeoutStartSec (SIGTERM, then SIGKILL) and WatchdogSec
// once ready (SIGABRT, then SIGKILL), as systemd does. Every step is an
// Event in a log that tests wait on (Wait) instead of sleeping.
//
// It is a stand-in that keeps the OTA tests fast (many kill -9 runs in
// seconds each); what systemd itself does with the packaged unit (the
// prestart, the watchdog, the sandbox, reboots) is shown by the virtual
// device (package vm, make test-vm), and claims about systemd rest there.
//
// Builder builds stamped iotagent binaries (and test programs) once per
// test binary run.
package otatest
