package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
	"github.com/iotagent/iotagent/agent/provision"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// writeIdentity writes the identity file that fleet provisioning leaves
// in the state dir.
func writeIdentity(t *testing.T, cfg config.Config, thing string) {
	t.Helper()
	data, err := json.Marshal(provision.Identity{ThingName: thing, CertificateID: "0123", CertificateFile: cfg.Identity.Cert,
		KeyFile: cfg.Identity.Key, ProvisionedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.IdentityFile()), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.IdentityFile(), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if id, err := provision.Load(cfg.StateDir); err != nil || id.ThingName != thing { // the file provisioning reads
		t.Fatalf("provision.Load = %+v, %v", id, err)
	}
}

// Once provisioned as cc-0002, a config naming chocolate-box-1 is refused
// at start with both names; a config naming no thing runs as cc-0002.
func TestThingNameComesFromIdentity(t *testing.T) {
	sim := cloudtest.Start(t, "")
	obs := observe(sim, "cc-0002")
	d := newDevice(t, sim, "cc-0002")
	writeIdentity(t, d.cfg, "cc-0002")

	d.cfg.ThingName = "chocolate-box-1"
	a, err := agent.New(d.cfg, agent.Options{Hardware: d.hw})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	err = a.Run(ctx)
	var mismatch *agent.ThingMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Run with a config naming another thing: %v, want a *ThingMismatchError", err)
	}
	for _, want := range []string{`"chocolate-box-1"`, `"cc-0002"`, d.cfg.IdentityFile(), "remove thing_name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}

	d.cfg.ThingName = ""
	d.start(t, agent.Options{})
	tel := waitFor(t, "telemetry from cc-0002", obs.telemetry, func(map[string]any) bool { return true })
	if tel["thing"] != "cc-0002" {
		t.Errorf("telemetry %v, want it from cc-0002", tel)
	}
	waitFor(t, "a report from cc-0002", obs.reported, func(map[string]any) bool { return true })
}
