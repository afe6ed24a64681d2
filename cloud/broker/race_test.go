//go:build race

package broker

// raceEnabled: the race detector is on (tests skip what it makes minutes
// long).
const raceEnabled = true
