package agent

import (
	"context"
	"errors"
	"time"

	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/defender"
)

// newDefender builds the Device Defender reporter on the agent's
// connection; its custom metrics are the agent's own counters.
func (a *Agent) newDefender() (*defender.Reporter, error) {
	return defender.New(a.defenderOptions())
}

func (a *Agent) defenderOptions() defender.Options {
	return defender.Options{
		Thing:    a.cfg.ThingName,
		Format:   a.cfg.Defender.Format,
		Interval: time.Duration(a.cfg.Defender.IntervalS) * time.Second,
		StateDir: a.cfg.StateDir,
		Publish: func(ctx context.Context, topic string, p []byte) error {
			return a.tr.Publish(ctx, topic, 1, p)
		},
		Subscribe:  func(filter string, h func(string, []byte)) error { return a.tr.Subscribe(filter, 1, h) },
		Custom:     a.defenderCustom,
		Logger:     a.log.With("component", "defender"),
		Now:        a.now,
		FirstDelay: a.opt.DefenderFirstDelay,
	}
}

func (a *Agent) defenderCustom() defender.Custom {
	ob := a.ob.Stats()
	c := defender.Custom{OutboxDepth: ob.Len, OutboxDropped: ob.Dropped}
	if tr := a.tr.Stats(); tr.Connects > 1 {
		c.Reconnects = tr.Connects - 1
	}
	a.mu.Lock()
	c.SensorReadErrors = a.st.ReadErrors
	a.mu.Unlock()
	return c
}

// DefenderDryRun builds the Device Defender report the agent would send
// now, from cfg and this machine's /proc, without connecting, sending or
// using up a report id: `iotagent defender report --dry-run`. The agent's
// own counters (outbox, reconnects) are not known outside the daemon and
// are left out.
func DefenderDryRun(cfg config.Config) ([]byte, error) {
	r, err := defender.New(defender.Options{
		Thing:    cfg.ThingName,
		Format:   cfg.Defender.Format,
		Interval: time.Duration(cfg.Defender.IntervalS) * time.Second,
		StateDir: cfg.StateDir,
		Publish:  func(context.Context, string, []byte) error { return errors.New("dry run: not sending") },
	})
	if err != nil {
		return nil, err
	}
	return r.Build()
}
