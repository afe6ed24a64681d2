package main

import (
	"context"
	"strings"
	"time"

	"github.com/iotagent/iotagent/agent/localapi"
)

// checkDegraded asks the running agent whether it is at risk of losing
// data though healthy (the disk refuses writes and messages wait in
// memory): FAIL with the reason.
func (d *diagRun) checkDegraded(ctx context.Context) {
	const check = "degraded"
	if !d.running {
		d.skip(check, "the agent is not running (or does not answer)")
		return
	}
	sock := d.env.socket
	if sock == "" {
		sock = d.cfg.LocalAPI.Socket
	}
	var ag localapi.Agent
	if err := localapi.NewClient(sock, min(d.env.timeout, 3*time.Second)).Get(ctx, localapi.SectionAgent, &ag); err != nil {
		d.add(check, warn, "cannot ask the agent: "+err.Error(), "")
		return
	}
	if len(ag.Degraded) == 0 {
		d.add(check, pass, "the agent reports nothing at risk", "")
		return
	}
	d.add(check, fail, strings.Join(ag.Degraded, "; "),
		"free space on the filesystem of "+d.cfg.StateDir+" (df -h "+d.cfg.StateDir+"), or repair it; the agent moves what waits in memory to disk by itself")
}
