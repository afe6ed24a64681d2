// Package vmctlproto is the protocol between the virtual device's test
// port in the guest (vm/guest/vmctl) and the host (package vm): one JSON
// object a line each way over a virtio-serial port. It depends on nothing
// of the project's, so that vmctl stays a small static binary.
package vmctlproto

// Request asks vmctl to run Argv (as root) with Stdin, for at most
// TimeoutS seconds (a minute when zero).
type Request struct {
	ID       int64    `json:"id"`
	Argv     []string `json:"argv"`
	Stdin    []byte   `json:"stdin,omitempty"`
	TimeoutS float64  `json:"timeout_s,omitempty"`
}

// Response is vmctl's answer to the Request with the same ID: the exit
// code and output, or Error when the command could not run or finish.
type Response struct {
	ID     int64  `json:"id"`
	Exit   int    `json:"exit"`
	Stdout []byte `json:"stdout"`
	Stderr []byte `json:"stderr"`
	Error  string `json:"error,omitempty"`
}
