// Package statefile is the one recovery mechanism for every file the agent
// owns in its state directory (agent.db, identity.json, provisioning and
// rotation progress, the in-flight job, the OTA state, the Defender report
// id).
//
// A file that cannot be read or parsed is never fatal and never deleted:
// Recover moves it aside to PATH.corrupt-<UTC timestamp> (as journald keeps
// a damaged journal as *.journal~), the caller salvages what it can from
// the moved copy and starts fresh, and the event goes into the state
// directory's journal (STATE/recovered.json, the last MaxEvents events).
// The agent logs each new event with the path, shows the journal in
// `iotagent status` and `iotagent diag` and reports it in the shadow
// (reported.recovered). A moved-aside copy stays until a person deletes it;
// diag warns while it is there.
//
// The package also finds which process holds a lock on a file
// (LockHolder), so that "in use" errors name it.
package statefile
