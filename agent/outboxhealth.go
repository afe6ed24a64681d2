package agent

import (
	"context"
	"time"
)

// watchOutbox follows the outbox's disk health: when the disk starts to
// refuse writes (messages then wait in memory) and when it takes them
// again, it logs, sets the last error and has the state reported.
func (a *Agent) watchOutbox(ctx context.Context) {
	was := ""
	for {
		select {
		case <-ctx.Done():
			if h := a.ob.Health(); h.Memory > 0 {
				a.log.Error("agent stopping with messages the disk would not take: they are lost",
					"lost", h.Memory, "disk_error", h.DiskError, "state_dir", a.cfg.StateDir)
			}
			return
		case <-a.ob.Changes():
		}
		h := a.ob.Health()
		now := h.Degraded()
		switch {
		case now == was:
		case h.DiskError != "" && was == "":
			a.log.Error("outbox: the disk refuses writes; messages wait in memory until it takes them again",
				"state_dir", a.cfg.StateDir, "err", h.DiskError, "memory_max", h.MemoryMax)
			a.mu.Lock()
			a.st.LastError = "outbox: " + now
			a.mu.Unlock()
		case now == "":
			a.log.Info("outbox: the disk takes writes again; what waited in memory is on disk",
				"state_dir", a.cfg.StateDir, "write_failures", h.WriteFailures)
			a.mu.Lock()
			if a.st.LastError == "outbox: "+was {
				a.st.LastError = ""
			}
			a.mu.Unlock()
		}
		was = now
		signal(a.dirty)
	}
}

// Degraded lists why the agent, though healthy (the systemd watchdog is
// still petted), is at risk of losing data; nil when it is not.
func (a *Agent) Degraded() []string {
	ob := a.box()
	if ob == nil {
		return nil
	}
	if d := ob.Health().Degraded(); d != "" {
		return []string{"outbox: " + d}
	}
	return nil
}

// reportedOutbox is the reported "outbox" object: drops in total and by
// class, why messages are at risk now ("" when they are not), and the
// disk writes refused since start with the last one, which the cloud
// learns even when the disk recovered before the device could connect.
func (a *Agent) reportedOutbox() map[string]any {
	st, h := a.ob.Stats(), a.ob.Health()
	m := map[string]any{
		"dropped": st.Dropped,
		"dropped_by_class": map[string]any{
			"telemetry": st.DroppedTelemetry, "warning": st.DroppedWarning, "alarm": st.DroppedAlarm,
		},
		"degraded":       h.Degraded(),
		"write_failures": h.WriteFailures,
	}
	if qs, err := a.ob.QuarantineStats(); err == nil { // a read error shows in status; report what is known
		m["quarantined"] = qs.Len
	}
	if h.LastWriteError != "" {
		m["last_write_error"] = h.LastWriteAt.UTC().Format(time.RFC3339) + ": " + h.LastWriteError
	}
	return m
}
