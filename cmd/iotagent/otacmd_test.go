package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/agent/localapi"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/ota"
	"github.com/iotagent/iotagent/sensors"
	"github.com/iotagent/iotagent/sensors/sensortest"
)

// fakeELF writes a minimal ELF executable header for machine plus a
// payload stamped with version as the Makefile stamps it (version ""
// stamps nothing): debug/elf accepts it; it is never run.
func fakeELF(t *testing.T, path string, machine elf.Machine, version string) {
	t.Helper()
	stamp := ""
	if version != "" {
		stamp = "iotagent-version:" + version + ";"
	}
	fakeELFWith(t, path, machine, strings.Repeat("iotagent "+version+"\n", 100)+stamp+strings.Repeat("x\n", 100))
}

func fakeELFWith(t *testing.T, path string, machine elf.Machine, payload string) {
	t.Helper()
	hdr := make([]byte, 64)
	copy(hdr, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	binary.LittleEndian.PutUint16(hdr[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(hdr[18:], uint16(machine))
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint16(hdr[52:], 64)
	binary.LittleEndian.PutUint16(hdr[54:], 56)
	binary.LittleEndian.PutUint16(hdr[58:], 64)
	data := append(hdr, payload...)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

var machines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM, "386": elf.EM_386, "riscv64": elf.EM_RISCV}

func hostMachine(t *testing.T) elf.Machine {
	m, ok := machines[runtime.GOARCH]
	if !ok {
		t.Skipf("no ELF machine for %s", runtime.GOARCH)
	}
	return m
}

// minisignTool returns the minisign CLI, or skips (fails under CI=true).
func minisignTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("minisign")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("minisign is not installed (apt-get install minisign)")
		}
		t.Skip("minisign is not installed (apt-get install minisign)")
	}
	return p
}

// cliOut runs the CLI with separate stdout and stderr.
func cliOut(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = run(args, &o, &e)
	return o.String(), e.String(), err
}

func TestOTAKeygenSignRelease(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "release")
	out, err := iotagent("ota", "keygen", "--out", prefix)
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	pubFile, _ := os.ReadFile(prefix + ".pub")
	secFile, _ := os.ReadFile(prefix + ".key")
	k, err := ota.LoadSecretKey(secFile, "")
	if err != nil {
		t.Fatal(err)
	}
	pubLine := k.PublicKey()
	if !strings.Contains(string(pubFile), pubLine) || !strings.Contains(out, pubLine) || !strings.Contains(out, "not encrypted") || !strings.Contains(out, `"trusted_keys": ["RW`) {
		t.Errorf("keygen output or .pub lacks the public key %s:\n%s\n%s", pubLine, out, pubFile)
	}
	if fi, err := os.Stat(prefix + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret key file: %v, %v; want mode 0600", fi, err)
	}
	// Never overwrites.
	if _, err := iotagent("ota", "keygen", "--out", prefix); exitCode(err) != exitFail || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second keygen: exit %d, %v", exitCode(err), err)
	}
	if again, _ := os.ReadFile(prefix + ".key"); !bytes.Equal(again, secFile) {
		t.Error("second keygen overwrote the secret key")
	}

	// sign writes FILE.minisig that the minisign tool accepts.
	bin := filepath.Join(dir, "iotagent-arm64")
	fakeELF(t, bin, elf.EM_AARCH64, "1.4.0")
	if out, err := iotagent("ota", "sign", "--key", prefix+".key", "--version", "1.4.0", bin); err != nil || !strings.Contains(out, bin+".minisig") {
		t.Fatalf("sign: %v\n%s", err, out)
	}
	if mini, err := exec.LookPath("minisign"); err == nil {
		if out, err := exec.Command(mini, "-Vm", bin, "-p", prefix+".pub").CombinedOutput(); err != nil {
			t.Errorf("minisign -V rejects our signature: %v\n%s", err, out)
		}
	}

	// release: the document ParseDocument accepts, verifying end to end.
	doc, stderr, err := cliOut("ota", "release", "--key", prefix+".key", "--url", "https://downloads.example.com/iotagent-1.4.0-arm64",
		"--version", "1.4.0", bin)
	if err != nil {
		t.Fatalf("release: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "using the existing signature") || !strings.Contains(stderr, "verified") {
		t.Errorf("release stderr: %s", stderr)
	}
	rel, err := ota.ParseDocument([]byte(doc), []string{"downloads.example.com"})
	if err != nil {
		t.Fatalf("ParseDocument(release output): %v\n%s", err, doc)
	}
	size, sum, _ := ota.FileDigest(bin)
	sig, _ := os.ReadFile(bin + ".minisig")
	want := ota.Release{Version: "1.4.0", URL: "https://downloads.example.com/iotagent-1.4.0-arm64", Size: size, SHA256: sum, Signature: string(sig), Arch: "arm64"}
	if diff := cmp.Diff(want, rel); diff != "" {
		t.Errorf("release document (-want +got):\n%s", diff)
	}
	if err := ota.VerifyRelease(bin, rel, []string{string(pubFile)}); err != nil {
		t.Errorf("the released document does not verify: %v", err)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(doc), &raw); err != nil || raw["operation"] != "ota" {
		t.Errorf("document %s: %v", doc, err)
	}

	// No FILE.minisig: release signs first; the S3 placeholder stays as
	// it is in the document (create-job replaces it).
	host := filepath.Join(dir, "iotagent-host")
	fakeELF(t, host, hostMachine(t), "1.5.0")
	placeholder := "${aws:iot:s3-presigned-url:https://s3.eu-west-1.amazonaws.com/fleet-releases/iotagent-1.5.0}"
	doc, stderr, err = cliOut("ota", "release", host, "--key", prefix+".key", "--url", placeholder, "--version", "1.5.0", "--allow-downgrade")
	if err != nil {
		t.Fatalf("release with a placeholder: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "signed "+host) || !strings.Contains(doc, `"url": "`+placeholder+`"`) || !strings.Contains(doc, `"allow_downgrade": true`) {
		t.Errorf("release with a placeholder:\n%s\n%s", stderr, doc)
	}
	if _, err := os.Stat(host + ".minisig"); err != nil {
		t.Errorf("release did not write the signature: %v", err)
	}
	rel, err = ota.ParseDocument([]byte(strings.Replace(doc, placeholder, "https://s3.eu-west-1.amazonaws.com/x?X-Amz-Signature=1&X-Amz-Expires=3600", 1)), nil)
	if err != nil || rel.Arch != runtime.GOARCH || !rel.AllowDowngrade {
		t.Errorf("document after the placeholder is replaced: %+v, %v", rel, err)
	}

	// Refusals: a stale signature, another key's signature, a wrong arch,
	// not an executable, bad usage.
	other := filepath.Join(dir, "other")
	if _, err := iotagent("ota", "keygen", "--out", other); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale")
	fakeELF(t, stale, elf.EM_AARCH64, "1.4.0")
	if _, err := iotagent("ota", "sign", "--key", prefix+".key", "--version", "1.4.0", stale); err != nil {
		t.Fatal(err)
	}
	fakeELF(t, stale, elf.EM_AARCH64, "1.4.0") // rebuilt, not signed again
	if f, err := os.OpenFile(stale, os.O_APPEND|os.O_WRONLY, 0); err == nil {
		f.WriteString("rebuilt\n")
		f.Close()
	}
	// The binary: stamped with a commit hash, "1.4.0" somewhere
	// in it.
	hash := filepath.Join(dir, "iotagent-bb1c651")
	fakeELFWith(t, hash, elf.EM_AARCH64, "github.com/x/y v1.4.0\niotagent-version:bb1c651;\n")
	unstamped := filepath.Join(dir, "iotagent-dev")
	fakeELF(t, unstamped, elf.EM_AARCH64, "")
	twice := filepath.Join(dir, "iotagent-twice")
	fakeELFWith(t, twice, elf.EM_AARCH64, "iotagent-version:1.4.0;iotagent-version:1.4.1;")
	notELF := filepath.Join(dir, "script.sh")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"stale signature", []string{"--key", prefix + ".key", stale}, exitFail, "bad signature"},
		{"another key", []string{"--key", other + ".key", bin}, exitFail, "not trusted"},
		{"wrong arch", []string{"--key", prefix + ".key", "--arch", "amd64", bin}, exitFail, "the job says arch amd64, the signature arm64"},
		{"unknown arch", []string{"--key", prefix + ".key", "--arch", "sparc", bin}, exitFail, `arch: unknown "sparc"`},
		{"not ELF", []string{"--key", prefix + ".key", notELF}, exitFail, "not an ELF"},
		{"bad version", []string{"--key", prefix + ".key", "--version", "latest", bin}, exitFail, "is not N.N.N"},
		{"not that version", []string{"--key", prefix + ".key", "--version", "1.4.2", bin}, exitFail, "is stamped version 1.4.0, not 1.4.2"},
		{"stamped a commit hash", []string{"--key", prefix + ".key", hash}, exitFail, "is stamped version bb1c651, not 1.4.0"},
		{"not stamped", []string{"--key", prefix + ".key", unstamped}, exitFail, "carries no version stamp"},
		{"stamped twice", []string{"--key", prefix + ".key", twice}, exitFail, "several version stamps"},
		{"bad url", []string{"--key", prefix + ".key", "--url", "ftp://x/y", bin}, exitFail, "scheme"},
		{"no key", []string{bin}, exitUsage, "--key"},
		{"no file", []string{"--key", prefix + ".key"}, exitUsage, "missing FILE"},
	} {
		args := append([]string{"ota", "release", "--url", "https://downloads.example.com/a", "--version", "1.4.0"}, tc.args...)
		if _, err := iotagent(args...); exitCode(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("release, %s: exit %d, %v; want %d and %q", tc.name, exitCode(err), err, tc.code, tc.want)
		}
	}
	for _, args := range [][]string{{"ota", "keygen"}, {"ota", "keygen", "--out", prefix + "2", "extra"}, {"ota", "sign", "--version", "1.4.0", bin},
		{"ota", "sign", "--key", prefix + ".key", "--version", "1.4.0"}, {"ota", "sign", "--key", prefix + ".key", bin}} {
		if _, err := iotagent(args...); exitCode(err) != exitUsage {
			t.Errorf("%q: exit %d, %v; want usage", args, exitCode(err), err)
		}
	}
	if _, err := iotagent("ota", "sign", "--key", filepath.Join(dir, "missing.key"), "--version", "1.4.0", bin); exitCode(err) != exitFail {
		t.Errorf("sign with a missing key: %v", err)
	}
}

// TestOTASignEncryptedKey: an encrypted key (testdata/ota-encrypted.key,
// a test key made by ota keygen --password-file with the password
// "correct horse") needs --password-file; with it, release signs and
// verifies. Decrypting costs one scrypt with minisign's parameters (about
// 1 GiB and seconds; minutes under the race detector), so that part does
// not run with -race or -short.
func TestOTASignEncryptedKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join("testdata", "ota-encrypted.key")
	bin := filepath.Join(dir, "iotagent")
	fakeELF(t, bin, hostMachine(t), "2.0.0")
	_, err := iotagent("ota", "sign", "--key", key, "--version", "2.0.0", bin)
	if exitCode(err) != exitFail || !strings.Contains(err.Error(), "encrypted") || !strings.Contains(err.Error(), "--password-file") {
		t.Errorf("sign with an encrypted key and no password: %v", err)
	}
	if testing.Short() || raceEnabled {
		t.Skip("decrypting the key (scrypt, 1 GiB) is too slow under -race and -short")
	}
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("wrong\n"), 0o600)
	if _, err := iotagent("ota", "sign", "--key", key, "--password-file", pw, "--version", "2.0.0", bin); exitCode(err) != exitFail || !strings.Contains(err.Error(), "wrong password") {
		t.Errorf("sign with the wrong password: %v", err)
	}
	os.WriteFile(pw, []byte("correct horse\r\n"), 0o600)
	doc, stderr, err := cliOut("ota", "release", "--key", key, "--password-file", pw, "--url", "https://h/x", "--version", "2.0.0", bin)
	if err != nil {
		t.Fatalf("release with an encrypted key: %v\n%s", err, stderr)
	}
	pub, _ := os.ReadFile(filepath.Join("testdata", "ota-encrypted.pub"))
	rel, err := ota.ParseDocument([]byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ota.VerifyRelease(bin, rel, []string{string(pub)}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if mini, err := exec.LookPath("minisign"); err == nil {
		if out, err := exec.Command(mini, "-Vm", bin, "-p", filepath.Join("testdata", "ota-encrypted.pub")).CombinedOutput(); err != nil {
			t.Errorf("minisign -V: %v\n%s", err, out)
		}
	}
	// keygen --password-file encrypts (the key above was made so).
	prefix := filepath.Join(dir, "enc")
	if out, err := iotagent("ota", "keygen", "--out", prefix, "--password-file", pw); err != nil || !strings.Contains(out, "(encrypted") {
		t.Fatalf("keygen --password-file: %v\n%s", err, out)
	}
	if _, err := iotagent("ota", "sign", "--key", prefix+".key", "--version", "2.0.0", bin); !errors.Is(err, ota.ErrKeyEncrypted) {
		t.Errorf("the new key is not encrypted: %v", err)
	}
}

// TestOTAReleaseMinisignSignature: a signature made by the minisign tool
// with the version and arch in its trusted comment is used as it is; one
// without them is refused.
func TestOTAReleaseMinisignSignature(t *testing.T) {
	mini := minisignTool(t)
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(mini, args...)
		cmd.Stdin = strings.NewReader("")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("minisign %v: %v\n%s", args, err, out)
		}
	}
	run("-G", "-W", "-p", filepath.Join(dir, "m.pub"), "-s", filepath.Join(dir, "m.key"))
	bin := filepath.Join(dir, "iotagent")
	fakeELF(t, bin, elf.EM_ARM, "3.0.0")
	run("-S", "-s", filepath.Join(dir, "m.key"), "-m", bin)
	_, stderr, err := cliOut("ota", "release", "--key", filepath.Join(dir, "m.key"), "--url", "https://h/x", "--version", "3.0.0", bin)
	if exitCode(err) != exitFail || !strings.Contains(err.Error(), "vouches for no version and arch") {
		t.Errorf("release with a minisign signature without -t: exit %d, %v\n%s", exitCode(err), err, stderr)
	}
	run("-S", "-s", filepath.Join(dir, "m.key"), "-m", bin, "-t", "version:3.0.0 arch:arm")
	sig, _ := os.ReadFile(bin + ".minisig")
	doc, stderr, err := cliOut("ota", "release", "--key", filepath.Join(dir, "m.key"), "--url", "https://h/x", "--version", "3.0.0", bin)
	if err != nil {
		t.Fatalf("release: %v\n%s", err, stderr)
	}
	rel, err := ota.ParseDocument([]byte(doc), nil)
	if err != nil || rel.Signature != string(sig) || rel.Arch != "arm" {
		t.Errorf("release with minisign's signature: %+v, %v", rel, err)
	}
}

func TestOTAHelp(t *testing.T) {
	for _, sub := range []string{"commit", "rollback", "sign", "keygen", "release", "init", "prestart"} {
		var out bytes.Buffer
		err := run([]string{"ota", sub, "-h"}, &out, &out)
		if exitCode(err) != exitOK || !strings.Contains(out.String(), "Usage: iotagent ota "+sub) {
			t.Errorf("ota %s -h: exit %d, %q", sub, exitCode(err), out.String())
		}
	}
	if _, err := iotagent("ota", "frobnicate"); exitCode(err) != exitUsage {
		t.Errorf("ota frobnicate: %v", err)
	}
}

// otaBox is a box with OTA enabled and STATE/ota set up as st, with slot
// a holding version 0.9.0 and slot b the running version "cli-test", the
// links repaired by PreStart as the unit does.
func otaBox(t *testing.T, b *box, st ota.Status) string {
	t.Helper()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "k")
	if _, err := iotagent("ota", "keygen", "--out", prefix); err != nil {
		t.Fatal(err)
	}
	pubFile, _ := os.ReadFile(prefix + ".pub")
	pk, err := ota.ParsePublicKey(string(pubFile))
	if err != nil {
		t.Fatal(err)
	}
	pub := pk.String()
	b.cfg["ota"] = map[string]any{"enabled": true, "trusted_keys": []string{pub}, "trial_timeout_s": 3600}
	b.write(t)
	stateDir := b.cfg["state_dir"].(string)
	m := hostMachine(t)
	fakeELF(t, filepath.Join(dir, "v09"), m, "0.9.0")
	if err := ota.Init(stateDir, filepath.Join(dir, "v09"), "0.9.0"); err != nil {
		t.Fatal(err)
	}
	l := ota.NewLayout(stateDir)
	fakeELF(t, l.SlotBinary("b"), m, "cli-test")
	data, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(l.Dir, "state.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := iotagent("ota", "prestart", "--state-dir", stateDir); err != nil {
		t.Fatalf("ota prestart: %v\n%s", err, out)
	}
	return stateDir
}

// otaAgent is an agent run by a test; exited is closed when Run returns.
type otaAgent struct {
	exited chan struct{}
	err    error
}

// startOTAAgent runs an agent (version cli-test) for b until the test
// ends, and returns once ready(status) holds for its local API status.
func startOTAAgent(t *testing.T, b *box, ready func(map[string]json.RawMessage) bool) *otaAgent {
	t.Helper()
	cfg, err := loadConfigWith(b.cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := sensortest.NewFakeSensor("bme280")
	env.Set(sensors.Reading{TemperatureC: 21.5, HumidityPct: 40, PressureKPa: 101.3})
	hw := &agent.Hardware{Motion: sensortest.NewFakeInput("motion"), Env: env}
	a, err := agent.New(cfg, agent.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hardware: hw, Version: "cli-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &otaAgent{exited: make(chan struct{})}
	go func() { ra.err = a.Run(ctx); close(ra.exited) }()
	t.Cleanup(func() {
		cancel()
		<-ra.exited
		if ra.err != nil {
			t.Errorf("agent: %v", ra.err)
		}
	})
	c := localapi.NewClient(b.socket, 5*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := c.Status(context.Background())
		if err == nil && ready(st) {
			return ra
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready: %v\n%s", err, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inSync(st map[string]json.RawMessage) bool {
	var sh localapi.Shadow
	return json.Unmarshal(st["shadow"], &sh) == nil && sh.InSync
}

func inTrial(st map[string]json.RawMessage) bool {
	var o localapi.OTA
	return json.Unmarshal(st["ota"], &o) == nil && o.InTrial
}

func otaSection(t *testing.T, b *box) localapi.OTA {
	t.Helper()
	out, err := iotagent("ota", "status", "--json", "--config", b.cfgPath)
	var o localapi.OTA
	if err != nil || json.Unmarshal([]byte(out), &o) != nil {
		t.Fatalf("ota status: %v\n%s", err, out)
	}
	return o
}

// TestOTACommitDuringTrial: a version on trial that cannot connect yet is
// committed by hand.
func TestOTACommitDuringTrial(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "ota-trial-box")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b.cfg["mqtt"].(map[string]any)["port"] = closed // it never connects
	stateDir := otaBox(t, b, ota.Status{State: ota.Confirm, JobID: "ota-1", Release: ota.Release{Version: "cli-test"},
		Active: "a", ActiveVersion: "0.9.0", Slot: "b", FromVersion: "0.9.0", MaxStarts: 3})
	startOTAAgent(t, b, inTrial)
	cfg := []string{"--config", b.cfgPath}
	if out, _ := iotagent(append([]string{"status"}, cfg...)...); !strings.Contains(out, "OTA         running cli-test ON TRIAL in slot b (start 1 of 3); slot a (0.9.0) is the fallback") {
		t.Errorf("status during the trial:\n%s", out)
	}

	out, err := iotagent(append([]string{"ota", "commit"}, cfg...)...)
	if err != nil || !strings.Contains(out, "committed version cli-test in slot b") || !strings.Contains(out, "slot a (version 0.9.0) stays as the fallback") {
		t.Fatalf("ota commit: exit %d, %v\n%s", exitCode(err), err, out)
	}
	if o := otaSection(t, b); o.State != "committed" || o.Active != "b" || o.ActiveVersion != "cli-test" || o.InTrial {
		t.Errorf("after commit: %+v", o)
	}
	l2 := ota.NewLayout(stateDir)
	if got, _ := os.Readlink(l2.Committed()); got != filepath.Join("slots", "b") {
		t.Errorf("committed -> %q after commit", got)
	}
	out, err = iotagent(append([]string{"ota", "commit", "--json"}, cfg...)...)
	var ch localapi.OTAChange
	if err != nil || json.Unmarshal([]byte(out), &ch) != nil || ch.Changed || ch.Active != "b" || !strings.Contains(ch.Message, "committed already") {
		t.Errorf("second commit: %v %+v\n%s", err, ch, out)
	}
}

// TestOTARollbackAfterCommit: the reported state names the slot; a
// rollback after a commit goes back to the other slot and the agent
// stops for the supervisor to start it.
func TestOTARollbackAfterCommit(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "ota-rb-box")
	stateDir := otaBox(t, b, ota.Status{State: ota.Committed, JobID: "ota-1", Release: ota.Release{Version: "cli-test"},
		Active: "b", ActiveVersion: "cli-test", FromVersion: "0.9.0", MaxStarts: 3})
	ag := startOTAAgent(t, b, inSync)
	cfg := []string{"--config", b.cfgPath}

	if out, _ := iotagent(append([]string{"status"}, cfg...)...); !strings.Contains(out, "OTA         running cli-test; slot b (cli-test) committed; last update committed") {
		t.Errorf("status after a commit:\n%s", out)
	}
	out, err := iotagent(append([]string{"shadow", "get"}, cfg...)...)
	if err != nil || !strings.Contains(out, `"slot": "b"`) || !strings.Contains(out, `"version": "cli-test"`) {
		t.Errorf("shadow get: the reported agent lacks slot b: %v\n%s", err, out)
	}
	raw, err := sim.Shadows().Get("ota-rb-box", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		State struct {
			Reported map[string]any `json:"reported"`
		} `json:"state"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if got := doc.State.Reported["agent"]; !cmp.Equal(got, any(map[string]any{"version": "cli-test", "slot": "b"})) {
		t.Errorf("the cloud's reported agent = %v, want version cli-test, slot b", got)
	}

	out, err = iotagent(append([]string{"ota", "rollback", "--reason", "alarm LED stuck"}, cfg...)...)
	if err != nil {
		t.Fatalf("ota rollback: exit %d, %v\n%s", exitCode(err), err, out)
	}
	for _, want := range []string{"rolled back: slot a (version 0.9.0) is committed", "version cli-test is not installed again", "the agent restarts into it now"} {
		if !strings.Contains(out, want) {
			t.Errorf("ota rollback output lacks %q:\n%s", want, out)
		}
	}
	select {
	case <-ag.exited:
		if ag.err != nil {
			t.Errorf("Run after rollback = %v, want nil (exit 0: systemd starts it again)", ag.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop after the rollback")
	}
	l := ota.NewLayout(stateDir)
	for _, link := range []string{l.Current(), l.Committed()} {
		if got, _ := os.Readlink(link); got != filepath.Join("slots", "a") {
			t.Errorf("%s -> %q, want slots/a", filepath.Base(link), got)
		}
	}
	var st ota.Status
	data, _ := os.ReadFile(filepath.Join(l.Dir, "state.json"))
	if err := json.Unmarshal(data, &st); err != nil || st.State != ota.RolledBack || st.Reason != "alarm LED stuck" || !cmp.Equal(st.Failed, []string{"cli-test"}) {
		t.Errorf("state after rollback: %+v, %v", st, err)
	}
	// The agent is gone: exit 3.
	if _, err := iotagent(append([]string{"ota", "rollback"}, cfg...)...); exitCode(err) != exitNoAgent {
		t.Errorf("rollback without an agent: exit %d, %v", exitCode(err), err)
	}
}

// TestOTACommandsOff: OTA off in the agent's config: exit 4; no agent:
// exit 3; nothing to roll back: exit 1.
func TestOTACommandsOff(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "ota-off-box")
	cfg := []string{"--config", b.cfgPath}
	for _, sub := range []string{"commit", "rollback"} {
		if _, err := iotagent(append([]string{"ota", sub}, cfg...)...); exitCode(err) != exitNoAgent || !strings.Contains(err.Error(), "not running") {
			t.Errorf("ota %s without an agent: exit %d, %v", sub, exitCode(err), err)
		}
	}
	startAgent(t, b)
	for _, sub := range []string{"commit", "rollback"} {
		if _, err := iotagent(append([]string{"ota", sub}, cfg...)...); exitCode(err) != exitNotProvided || !strings.Contains(err.Error(), "ota.enabled") {
			t.Errorf("ota %s with OTA off: exit %d, %v", sub, exitCode(err), err)
		}
	}
	out, err := iotagent(append([]string{"shadow", "get"}, cfg...)...)
	if err != nil || strings.Contains(out, `"slot"`) {
		t.Errorf("OTA off: the reported agent has a slot: %v\n%s", err, out)
	}
}

// TestOTANothingToRollBack: OTA on and initialised, no update ever: both
// commands explain and rollback fails.
func TestOTANothingToRollBack(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "ota-idle-box")
	otaBox(t, b, ota.Status{State: ota.Idle, Active: "b", ActiveVersion: "cli-test", MaxStarts: 3})
	startOTAAgent(t, b, inSync)
	cfg := []string{"--config", b.cfgPath}
	if _, err := iotagent(append([]string{"ota", "rollback"}, cfg...)...); exitCode(err) != exitFail || !strings.Contains(err.Error(), "nothing to roll back to (state idle)") {
		t.Errorf("rollback with nothing to roll back: exit %d, %v", exitCode(err), err)
	}
	if out, err := iotagent(append([]string{"ota", "commit"}, cfg...)...); err != nil || !strings.Contains(out, "nothing on trial") {
		t.Errorf("commit with nothing on trial: %v\n%s", err, out)
	}
}

// TestOTARollbackWithoutJobs: with the jobs runner off, a rollback still
// restarts the agent.
func TestOTARollbackWithoutJobs(t *testing.T) {
	sim := cloudtest.Start(t, "")
	b := newBox(t, sim, "ota-nojobs-box")
	b.cfg["jobs"] = map[string]any{"enabled": false}
	otaBox(t, b, ota.Status{State: ota.Committed, JobID: "ota-1", Release: ota.Release{Version: "cli-test"},
		Active: "b", ActiveVersion: "cli-test", FromVersion: "0.9.0", MaxStarts: 3})
	ag := startOTAAgent(t, b, inSync)
	out, err := iotagent("ota", "rollback", "--config", b.cfgPath)
	if err != nil || !strings.Contains(out, "the agent restarts into it now") {
		t.Fatalf("ota rollback: exit %d, %v\n%s", exitCode(err), err, out)
	}
	select {
	case <-ag.exited:
		if ag.err != nil {
			t.Errorf("Run after rollback = %v, want nil", ag.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop after the rollback")
	}
}
