package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent/transport"
)

func TestHealth(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fresh := now.Add(-time.Second)
	limit := 3 * time.Minute
	tests := []struct {
		name      string
		heartbeat time.Time
		st        transport.Stats
		want      string // "" = healthy; else a part of the error
	}{
		{"connected and subscribed", fresh, transport.Stats{Connected: true, Subscriptions: 6, Subscribed: 6}, ""},
		{"alive but deaf", fresh, transport.Stats{Connected: true, Subscriptions: 6, Subscribed: 5}, "5 of 6 subscriptions"},
		{"main loop stalled", now.Add(-time.Minute), transport.Stats{Connected: true, Subscriptions: 6, Subscribed: 6}, "main loop stalled"},
		{"reconnecting within backoff", fresh, transport.Stats{LastAttempt: now.Add(-time.Minute)}, ""},
		{"gave up reconnecting", fresh, transport.Stats{LastAttempt: now.Add(-10 * time.Minute)}, "no connection attempt for 10m0s"},
		{"never tried", fresh, transport.Stats{}, "no connection attempt yet"},
		// after the broker closed the connection after a denied packet the
		// backoff is longer than usual: not a transport that gave up
		{"policy backoff", fresh, transport.Stats{LastAttempt: now.Add(-8 * time.Minute), NextAttempt: now.Add(2 * time.Minute)}, ""},
		{"policy backoff overdue", fresh, transport.Stats{LastAttempt: now.Add(-20 * time.Minute), NextAttempt: now.Add(-10 * time.Minute)}, "no connection attempt for 20m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := health(now, tt.heartbeat, tt.st, limit)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("health = %v, want healthy", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("health = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
