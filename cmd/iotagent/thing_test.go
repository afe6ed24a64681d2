package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/agent/provision"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// A device provisioned as cc-0002 with a config naming chocolate-box-1:
// iotagent run refuses to start, naming both things, the config file and
// the identity file; diag FAILs the same way. Without thing_name, diag
// goes on as cc-0002.
func TestThingNameMismatchRefused(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "cc-0002")
	stateDir := b.cfg["state_dir"].(string)
	idFile := filepath.Join(stateDir, "identity", "identity.json")
	ident := b.cfg["identity"].(map[string]any)
	data, _ := json.Marshal(provision.Identity{ThingName: "cc-0002", CertificateFile: ident["cert"].(string), KeyFile: ident["key"].(string)})
	if err := os.MkdirAll(filepath.Dir(idFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(idFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b.set(t, "", "thing_name", "chocolate-box-1")

	out, err := iotagent("run", "--config", b.cfgPath)
	if exitCode(err) == exitOK {
		t.Fatalf("iotagent run: exit 0, want a refusal\n%s", out)
	}
	for _, want := range []string{"config " + b.cfgPath, `"chocolate-box-1"`, `"cc-0002"`, idFile} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("iotagent run: %v\nwant it to name %s", err, want)
		}
	}

	res := b.diag(t, nil)
	expect(t, res, "identity", fail, "names thing chocolate-box-1; this device is provisioned as cc-0002 ("+idFile+")")
	expect(t, res, "identity", fail, "remove thing_name from "+b.cfgPath)

	delete(b.cfg, "thing_name")
	b.write(t)
	res = b.diag(t, nil)
	expect(t, res, "config", pass, "is valid")
	expect(t, res, "identity", pass, "cc-0002, from the provisioned identity "+idFile)
	expect(t, res, "mqtt", pass, "as client ID cc-0002")
}
