package outbox

// Bucket is the name of the bbolt bucket that holds the queue; the
// counters are in MetaBucket. The agent's recovery of a damaged agent.db
// (agent/statedb.go) copies every bucket it can read into a new database
// and uses ValidRecord to keep only the queue records that still read.
const (
	Bucket     = "outbox"
	MetaBucket = "outbox_meta"
)

// ValidRecord reports whether k and v are a queue record that Open would
// keep: an 8-byte ID above 0 and a value whose checksum, version, class
// and topic length are right.
func ValidRecord(k, v []byte) bool {
	if _, err := decodeKey(k); err != nil {
		return false
	}
	_, _, err := checkRecord(v)
	return err == nil
}
