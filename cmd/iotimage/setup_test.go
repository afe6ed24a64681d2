package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fakeDevice is a boot partition and a PATH whose apt-get, iotagent and
// systemctl record their calls (and fail when FAIL_<name>=1), for running
// the real setup.sh.
type fakeDevice struct {
	boot, state, calls, bin string
}

func newFakeDevice(t *testing.T, debs ...string) fakeDevice {
	t.Helper()
	root := t.TempDir()
	d := fakeDevice{boot: filepath.Join(root, "boot", "firmware"), state: filepath.Join(root, "var", "lib", "iotagent-setup"),
		calls: filepath.Join(root, "calls"), bin: filepath.Join(root, "bin")}
	for _, dir := range []string{filepath.Join(d.boot, setupDir), filepath.Join(d.boot, agentDir), d.bin} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(d.boot, setupScript), string(setupSh))
	writeFile(t, filepath.Join(d.boot, agentDir, "config.json"), "{}")
	for _, deb := range debs {
		writeFile(t, filepath.Join(d.boot, setupDir, deb), "deb")
	}
	for _, name := range []string{"apt-get", "iotagent", "systemctl"} {
		stub := "#!/bin/sh\necho \"" + name + " $*\" >>\"$CALLS\"\n" +
			"v=$(printenv FAIL_" + strings.ReplaceAll(name, "-", "_") + ")\n[ \"$v\" = 1 ] && exit 100\nexit 0\n"
		if err := os.WriteFile(filepath.Join(d.bin, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// run runs setup.sh with sh (dash on Debian: POSIX only).
func (d fakeDevice) run(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{filepath.Join(d.boot, setupScript)}, args...)...)
	cmd.Env = append([]string{"PATH=" + d.bin + ":/usr/bin:/bin", "CALLS=" + d.calls, "IOTAGENT_SETUP_STATE=" + d.state}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
	}
	return 0, string(out)
}

func (d fakeDevice) takeCalls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(d.calls)
	os.Remove(d.calls)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func (d fakeDevice) log(t *testing.T) string {
	data, _ := os.ReadFile(filepath.Join(d.boot, setupDir, "setup.log"))
	return string(data)
}

func TestSetupScript(t *testing.T) {
	d := newFakeDevice(t, "iotagent_1.4.0_arm64.deb")
	deb := filepath.Join(d.boot, setupDir, "iotagent_1.4.0_arm64.deb")
	wantCalls := []string{
		"apt-get install -y " + deb,
		"iotagent firstboot --user iotagent --boot-dir " + filepath.Join(d.boot, agentDir),
		"systemctl enable iotagent",
		"systemctl start --no-block iotagent",
	}
	code, out := d.run(t, nil)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if got := d.takeCalls(t); strings.Join(got, "\n") != strings.Join(wantCalls, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
	if done, _ := os.ReadFile(filepath.Join(d.state, "done")); string(done) != "iotagent_1.4.0_arm64.deb\n" {
		t.Errorf("done = %q", done)
	}
	log := d.log(t)
	stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ iotagent-setup: `)
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) != 6 {
		t.Errorf("setup.log has %d lines, want 6 (start, 4 steps, done):\n%s", len(lines), log)
	}
	for _, l := range lines {
		if !stamp.MatchString(l) {
			t.Errorf("setup.log line without a timestamp: %q", l)
		}
		if !strings.Contains(out, strings.SplitN(l, " ", 2)[1]) {
			t.Errorf("setup.log line not on stdout: %q", l)
		}
	}

	// Again: done at once, nothing called, nothing logged.
	if code, out := d.run(t, nil); code != 0 || !strings.Contains(out, "set up already") {
		t.Errorf("second run: exit %d\n%s", code, out)
	}
	if got := d.takeCalls(t); got != nil {
		t.Errorf("second run called %q", got)
	}
	if d.log(t) != log {
		t.Error("second run wrote to setup.log")
	}

	// A new package (prepare run again with another .deb): set up again,
	// here without starting (as firstrun.sh runs it).
	os.Remove(deb)
	writeFile(t, filepath.Join(d.boot, setupDir, "iotagent_1.5.0_arm64.deb"), "deb")
	if code, out := d.run(t, nil, "--no-start"); code != 0 {
		t.Fatalf("new package: exit %d\n%s", code, out)
	}
	got := d.takeCalls(t)
	if len(got) != 3 || got[0] != "apt-get install -y "+filepath.Join(d.boot, setupDir, "iotagent_1.5.0_arm64.deb") || got[2] != "systemctl enable iotagent" {
		t.Errorf("--no-start calls: %q", got)
	}
	if done, _ := os.ReadFile(filepath.Join(d.state, "done")); string(done) != "iotagent_1.5.0_arm64.deb\n" {
		t.Errorf("done = %q", done)
	}
}

func TestSetupScriptFailures(t *testing.T) {
	tests := []struct {
		name  string
		debs  []string
		env   []string
		calls int
		want  []string // in setup.log
	}{
		{"apt-get fails", []string{"iotagent_1.4.0_arm64.deb"}, []string{"FAIL_apt_get=1"}, 1,
			[]string{"FAILED: apt-get install -y ", "what to do: ", "sudo sh "}},
		{"firstboot refuses the config", []string{"iotagent_1.4.0_arm64.deb"}, []string{"FAIL_iotagent=1"}, 2,
			[]string{"FAILED: iotagent firstboot: the configuration in ", "firstboot-error.json", "iotagent status"}},
		{"enable fails", []string{"iotagent_1.4.0_arm64.deb"}, []string{"FAIL_systemctl=1"}, 3,
			[]string{"FAILED: systemctl enable iotagent"}},
		{"no package", nil, nil, 0, []string{"FAILED: no iotagent_*.deb in "}},
		{"two packages", []string{"iotagent_1.4.0_arm64.deb", "iotagent_1.5.0_arm64.deb"}, nil, 0,
			[]string{"FAILED: more than one package in ", "iotagent_1.4.0_arm64.deb, iotagent_1.5.0_arm64.deb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newFakeDevice(t, tt.debs...)
			code, out := d.run(t, tt.env)
			if code == 0 {
				t.Fatalf("exit 0\n%s", out)
			}
			if got := d.takeCalls(t); len(got) != tt.calls {
				t.Errorf("calls %q: want %d", got, tt.calls)
			}
			log := d.log(t)
			for _, w := range tt.want {
				if !strings.Contains(log, w) || !strings.Contains(out, w) {
					t.Errorf("setup.log and stdout should say %q:\nlog:\n%s\nstdout:\n%s", w, log, out)
				}
			}
			if _, err := os.Stat(filepath.Join(d.state, "done")); !os.IsNotExist(err) {
				t.Errorf("done recorded after a failure: %v", err)
			}
		})
	}
}

// TestFirstrunScript: firstrun.sh is valid bash, ends by removing itself
// and its exact cmdline.txt entry, and exits 0.
func TestFirstrunScript(t *testing.T) {
	for _, s := range []settings{{}, {hostname: "box-1", user: "alice", passwordHash: testHash, sshKeys: []string{"ssh-ed25519 AAAA it's"}, wifiSSID: `a "net" $x`, wifiPSK: "pa'ss$word`x`", wifiCountry: "GB"}} {
		script := firstrunScript(s)
		p := filepath.Join(t.TempDir(), "firstrun.sh")
		writeFile(t, p, string(script))
		if out, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v\n%s\n%s", err, out, script)
		}
		// The sed line removes exactly what withCmdlineEntry added.
		cl := filepath.Join(t.TempDir(), "cmdline.txt")
		line, _ := withCmdlineEntry([]byte(stockCmdline), true)
		writeFile(t, cl, string(line))
		sedLine := ""
		for _, l := range strings.Split(string(script), "\n") {
			if strings.HasPrefix(l, "sed -i ") {
				sedLine = strings.Replace(l, deviceBoot+"/"+cmdlineFile, cl, 1)
			}
		}
		if out, err := exec.Command("sh", "-c", sedLine).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", sedLine, err, out)
		}
		if got, _ := os.ReadFile(cl); string(got) != stockCmdline {
			t.Errorf("after firstrun.sh's sed: %q, want %q", got, stockCmdline)
		}
		if !strings.HasSuffix(string(script), "\nexit 0\n") {
			t.Error("firstrun.sh does not end with exit 0")
		}
	}
}
