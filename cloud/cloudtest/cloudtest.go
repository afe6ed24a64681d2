// Package cloudtest starts iotsim for tests: a Sim on free loopback ports
// in a temporary data dir, stopped when the test ends.
package cloudtest

import (
	"log/slog"
	"testing"

	"github.com/iotagent/iotagent/cloud"
)

// Start runs a Sim for t. dataDir "" means a fresh t.TempDir().
func Start(t testing.TB, dataDir string) *cloud.Sim {
	t.Helper()
	return StartWith(t, cloud.Options{DataDir: dataDir})
}

// StartWith is Start with options; empty addresses pick free loopback ports.
func StartWith(t testing.TB, o cloud.Options) *cloud.Sim {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.MQTTAddr == "" {
		o.MQTTAddr = "127.0.0.1:0"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MQTTConnectInterval == 0 {
		// Tests reconnect a client id right after the broker closed it,
		// faster than AWS's one CONNECT per second per client id allows;
		// a test of how a client copes with that limit sets
		// MQTTConnectInterval to time.Second.
		o.MQTTConnectInterval = -1
	}
	s, err := cloud.Start(o)
	if err != nil {
		t.Fatalf("start iotsim: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
