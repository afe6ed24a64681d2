//go:build !unix

package statefile

// LockHolder cannot tell on this system.
func LockHolder(string) string { return "" }
