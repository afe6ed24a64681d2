package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runSplit runs the CLI in-process with stdout and stderr apart.
func runSplit(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	err := run(args, &out, &errOut)
	return out.String(), errOut.String(), exitCode(err)
}

// every lists every command and group by its path.
func every() [][]string {
	var out [][]string
	var walk func([]*command)
	walk = func(cs []*command) {
		for _, c := range cs {
			out = append(out, strings.Fields(c.name))
			walk(c.sub)
		}
	}
	walk(commands)
	return out
}

// TestEveryCommandHelp: -h, --help and "iotagent help PATH" print the
// command's help on stdout and exit 0, for every command and group; a
// group's help lists its commands.
func TestEveryCommandHelp(t *testing.T) {
	for _, path := range every() {
		c := find2(t, path...)
		name := strings.Join(path, " ")
		t.Run(name, func(t *testing.T) {
			var helps []string
			for _, args := range [][]string{append(path, "-h"), append(path, "--help"), append([]string{"help"}, path...)} {
				out, errOut, code := runSplit(args...)
				if code != exitOK || errOut != "" {
					t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
				}
				if !strings.HasPrefix(out, "Usage: iotagent "+name) || strings.Contains(out, "Usage of") || !strings.Contains(out, "Exit codes:\n  0  ok\n") {
					t.Errorf("%q printed:\n%s", args, out)
				}
				helps = append(helps, out)
			}
			if helps[0] != helps[1] || helps[1] != helps[2] {
				t.Errorf("-h, --help and help differ:\n%s\n---\n%s\n---\n%s", helps[0], helps[1], helps[2])
			}
			for _, s := range c.sub {
				if !strings.Contains(helps[0], "\n  "+s.name+" ") {
					t.Errorf("group help does not list %q:\n%s", s.name, helps[0])
				}
			}
			if len(c.sub) == 0 && !strings.Contains(helps[0], "--json") {
				t.Errorf("%s takes no --json:\n%s", name, helps[0])
			}
		})
	}
}

// TestEveryCommandUnknownFlag: an unknown flag is a usage error said once
// on stderr, the same way everywhere; under --json also an error object
// on stdout.
func TestEveryCommandUnknownFlag(t *testing.T) {
	for _, path := range every() {
		c := find2(t, path...)
		name := strings.Join(path, " ")
		t.Run(name, func(t *testing.T) {
			out, errOut, code := runSplit(append(path, "--no-such-flag")...)
			want := "iotagent " + name + ": unknown flag --no-such-flag\n"
			if len(c.sub) > 0 {
				want = "iotagent " + name + ": missing the command before the flag --no-such-flag: "
			}
			if code != exitUsage || out != "" || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "no-such-flag") != 1 ||
				!strings.Contains(errOut, "Usage: "+c.usage()+"\n") {
				t.Errorf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
			}

			out, _, code = runSplit(append(path, "--no-such-flag", "--json")...)
			var e errorJSON
			if err := json.Unmarshal([]byte(out), &e); err != nil || code != exitUsage || e.Code != exitUsage || e.Retryable ||
				!strings.Contains(e.Error, "no-such-flag") || !strings.Contains(e.Hint, "iotagent help "+name) {
				t.Errorf("--json: exit %d, %+v (%v) from\n%s", code, e, err, out)
			}
		})
	}
}

// TestEveryCommandFailureJSON: every command that reads a config, given
// one that does not exist, fails naming it: on stderr, and under --json as
// the error object (diag and config validate put the failure in their own
// result instead and exit 1).
func TestEveryCommandFailureJSON(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	args := map[string][]string{"log-level": {"info"}, "outbox purge": {"--all"}}
	for _, c := range leaves() {
		fs, _, _ := c.flagSet()
		if fs.Lookup("config") == nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			cmd := append(append(strings.Fields(c.name), args[c.name]...), "--config", missing)
			out, errOut, code := runSplit(cmd...)
			if c.name == "diag" {
				errOut = out + errOut // the FAIL line names it
			}
			if !strings.Contains(errOut, missing) || !strings.Contains(errOut, "iotagent "+c.name+": ") {
				t.Errorf("text: exit %d, stderr %q", code, errOut)
			}
			out, errOut, code = runSplit(append(cmd, "--json")...)
			switch c.name {
			case "diag", "config validate":
				if code != exitFail || !json.Valid([]byte(out)) || !strings.Contains(out, missing) || !strings.Contains(errOut, "iotagent "+c.name+": ") {
					t.Errorf("exit %d, stdout\n%s\nstderr %q", code, out, errOut)
				}
				return
			}
			var e errorJSON
			if err := json.Unmarshal([]byte(out), &e); err != nil || code != exitUsage || e.Code != exitUsage || !strings.Contains(e.Error, missing) || e.Hint == "" {
				t.Errorf("exit %d, %+v (%v) from\n%s", code, e, err, out)
			}
		})
	}
}

// TestEveryLeafTakesJSON: --json is a flag of every command.
func TestEveryLeafTakesJSON(t *testing.T) {
	for _, c := range leaves() {
		if fs, _, _ := c.flagSet(); fs.Lookup("json") == nil {
			t.Errorf("%s has no --json", c.name)
		}
	}
}

// TestExitCodesDocumented: the README and the man page list the exit
// codes as --help does.
func TestExitCodesDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	man, err := os.ReadFile("../../packaging/iotagent.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exitCodes {
		text := strings.Join(strings.Fields(e.text), " ")
		if row := fmt.Sprintf("| %d | %s |", e.code, text); !strings.Contains(string(readme), row) {
			t.Errorf("README.md lacks the row %q", row)
		}
		if entry := fmt.Sprintf(".B %d\n%s\n", e.code, text); !strings.Contains(string(man), entry) {
			t.Errorf("packaging/iotagent.1 lacks %q", entry)
		}
	}
}
