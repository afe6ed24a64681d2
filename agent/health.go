package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/iotagent/iotagent/agent/transport"
)

const (
	// heartbeatEvery is how often the main loop proves it is turning.
	heartbeatEvery = 5 * time.Second
	// readyWait bounds how long start-up waits for the first shadow sync
	// before telling systemd it is ready anyway (offline start).
	readyWait = 30 * time.Second
)

// Healthy reports whether the agent is working in fact, not merely alive:
// its main loop is turning, and it is either connected with every
// subscription acknowledged, or still trying to connect within its
// backoff. systemd's watchdog is petted only while it returns nil.
func (a *Agent) Healthy() error {
	tr := a.transport()
	if tr == nil {
		return fmt.Errorf("not started")
	}
	return health(time.Now(), time.Unix(0, a.heartbeat.Load()), tr.Stats(), a.reconnectLimit())
}

// reconnectLimit is the longest a healthy transport goes between
// connection attempts: the backoff ceiling plus a connect timeout, with
// some slack.
func (a *Agent) reconnectLimit() time.Duration {
	return time.Duration(a.cfg.MQTT.BackoffMaxS+a.cfg.MQTT.ConnectTimeoutS)*time.Second + 30*time.Second
}

func health(now, heartbeat time.Time, st transport.Stats, reconnectLimit time.Duration) error {
	if age := now.Sub(heartbeat); age > 3*heartbeatEvery {
		return fmt.Errorf("main loop stalled: no heartbeat for %s", age.Round(time.Second))
	}
	if st.Connected {
		if st.Subscribed < st.Subscriptions {
			return fmt.Errorf("connected but deaf: %d of %d subscriptions acknowledged", st.Subscribed, st.Subscriptions)
		}
		return nil
	}
	if st.LastAttempt.IsZero() {
		return fmt.Errorf("not connected and no connection attempt yet")
	}
	if wait := st.NextAttempt.Sub(st.LastAttempt); wait > 0 {
		// a longer backoff than usual (the broker closed the connection
		// after a packet): the next attempt is due later
		reconnectLimit = max(reconnectLimit, wait+time.Minute)
	}
	if since := now.Sub(st.LastAttempt); since > reconnectLimit {
		return fmt.Errorf("not connected and no connection attempt for %s", since.Round(time.Second))
	}
	return nil
}

// notifyLoop speaks systemd's notify protocol when the agent runs as a
// Type=notify service: READY=1 after the first shadow sync (or readyWait
// offline), then WATCHDOG=1 at half the watchdog interval while Healthy.
func (a *Agent) notifyLoop(ctx context.Context) {
	notify := func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			a.log.Warn("systemd notify", "err", err)
		}
	}
	select {
	case <-ctx.Done():
		return
	case <-a.synced:
		notify(daemon.SdNotifyReady + "\nSTATUS=connected, shadow in sync")
	case <-time.After(readyWait):
		a.log.Warn("no shadow sync yet; reporting ready to systemd and going on offline", "waited", readyWait)
		notify(daemon.SdNotifyReady + "\nSTATUS=running offline: not connected yet")
	}
	defer notify(daemon.SdNotifyStopping)
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		a.log.Warn("systemd watchdog settings", "err", err)
	}
	if interval <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := a.Healthy()
		switch {
		case err == nil:
			notify(daemon.SdNotifyWatchdog)
			if lastErr != "" {
				a.log.Info("healthy again")
				notify("STATUS=connected, healthy")
				lastErr = ""
			}
		case err.Error() != lastErr:
			lastErr = err.Error()
			a.log.Warn("unhealthy: not petting the systemd watchdog", "err", err)
			notify("STATUS=unhealthy: " + lastErr)
		}
	}
}
