// Package ota updates the agent's own binary with two slots (A/B), a
// trial start and automatic rollback.
//
// The update is an explicit state machine whose state is persisted
// (atomically, fsync'd) in STATE/ota/state.json before each step:
//
//		Idle -> Download -> Verify -> Stage -> Apply -> Confirm -> Committed
//		                                                       \-> RolledBack
//
//	  - Download streams the artifact to STATE/ota/download.part, resuming
//	    with an HTTP Range request after an interruption (a dropped
//	    connection, a restart), with bounded retries and backoff.
//	  - Verify checks size, SHA-256, the minisign signature against the
//	    trusted keys and the ELF header against this device's CPU, before any
//	    slot is touched.
//	  - Stage writes the inactive slot STATE/ota/slots/{a,b}/iotagent with
//	    minio/selfupdate (always with an explicit TargetPath) and fsyncs the
//	    file and its directory.
//	  - Apply records the trial (Confirm, zero starts) and then flips the
//	    STATE/ota/current symlink to the new slot with one atomic rename.
//	  - Confirm: the agent restarts into the new version, which commits
//	    (Updater.Commit) once it has connected, subscribed and synced its
//	    shadow. Until then every start is counted by PreStart.
//
// state.json is the single source of truth; the two symlinks are views
// derived from it for the supervisor (systemd):
//
//	STATE/ota/current   -> slots/X   ExecStart=STATE/ota/current/iotagent run
//	STATE/ota/committed -> slots/Y   ExecStartPre=STATE/ota/committed/iotagent ota prestart
//
// PreStart runs before every start from the committed (known-good)
// binary, never from the one on trial, so a new binary that cannot even
// start (it dies before main, or is built for another CPU) is still
// counted and rolled back. It repairs the symlinks from state.json, which
// makes every step safe to interrupt with kill -9 or a power cut: a
// restart resumes or undoes it. Versions that failed are remembered and
// never installed again automatically; downgrades are refused unless the
// release allows them.
//
// Artifacts are signed with the standard minisign tool (or Sign, which
// writes the same format); GenerateKey writes minisign-compatible key
// files.
package ota
