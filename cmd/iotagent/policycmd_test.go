package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/config"
)

// TestPolicyCommand: iotagent policy prints agent.Policy of the config
// named, as JSON, and a config that is not there is a usage error that
// says which.
func TestPolicyCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"policy", "--config", "../../configs/chocolate-box.json"}, &out, &errb); err != nil {
		t.Fatalf("policy: %v\n%s", err, errb.String())
	}
	data, err := config.ReadFile("../../configs/chocolate-box.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, "../../configs")
	if err != nil {
		t.Fatal(err)
	}
	want, err := agent.Policy(cfg, agent.PolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got agent.PolicyDocument
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("policy output is not a policy document: %v\n%s", err, out.String())
	}
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	if !bytes.Equal(wb, gb) {
		t.Errorf("policy printed\n%s\nwant agent.Policy's\n%s", gb, wb)
	}

	out.Reset()
	errb.Reset()
	err = run([]string{"policy", "--config", "/nonexistent/config.json"}, &out, &errb)
	if code := exitCode(err); code != exitUsage || !strings.Contains(errb.String(), "/nonexistent/config.json") {
		t.Errorf("policy with a missing config: exit %d, stderr %q", code, errb.String())
	}
}
