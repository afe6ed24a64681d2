package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func iotagent(args ...string) (string, error) {
	var out bytes.Buffer
	err := run(args, &out, &out)
	return out.String(), err
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"thing_name":"box-1","state_dir":"`+dir+`","mqtt":{"endpoint":"example.com","root_ca":"ca.pem"}}`), 0o644)
	if out, err := iotagent("config", "validate", "--config", good); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("valid config: %v\n%s", err, out)
	}

	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"thing_name":"box 1","mqtt":{"endpoint":"example.com","root_ca":"ca.pem","port":443,"prot":1}}`), 0o644)
	_, err := iotagent("config", "validate", "--config", bad)
	if err == nil || !strings.Contains(err.Error(), `mqtt.prot`) {
		t.Fatalf("unknown key: %v, want an error naming mqtt.prot", err)
	}
	os.WriteFile(bad, []byte(`{"thing_name":"box 1","mqtt":{"endpoint":"example.com","root_ca":"ca.pem","port":443}}`), 0o644)
	_, err = iotagent("config", "validate", "--config", bad)
	for _, want := range []string{"thing_name", "mqtt.port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("invalid config: %v, want every problem, %s among them", err, want)
		}
	}
	if _, err := iotagent("config", "validate", "--config", filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing config file validated")
	}
}

func TestStateDirFlagMovesDerivedPaths(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("x"), 0o644)
	file := filepath.Join(dir, "c.json")
	os.WriteFile(file, []byte(`{"thing_name":"b","state_dir":"/var/lib/iotagent","mqtt":{"endpoint":"h","root_ca":"ca.pem"},"sensors":{"motion":{"driver":"sim"}}}`), 0o644)
	state := filepath.Join(dir, "state")
	fs, _, x := find2(t, "run").flagSet()
	if err := fs.Parse([]string{"--config", file, "--state-dir", state}); err != nil {
		t.Fatal(err)
	}
	c, err := x.loadConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Identity.Key != filepath.Join(state, "identity", "device.key") || c.Sensors.Motion.SimFIFO != filepath.Join(state, "sim", "motion") {
		t.Errorf("paths not moved with --state-dir: key %s, fifo %s", c.Identity.Key, c.Sensors.Motion.SimFIFO)
	}
}

func TestVersionAndUsage(t *testing.T) {
	if out, err := iotagent("version"); err != nil || !strings.HasPrefix(out, "iotagent ") {
		t.Errorf("version: %v %q", err, out)
	}
	for _, args := range [][]string{{}, {"bogus"}, {"config"}} {
		if _, err := iotagent(args...); err == nil {
			t.Errorf("iotagent %q succeeded", args)
		}
	}
}
