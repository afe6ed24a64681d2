package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/iotagent/iotagent/internal/mbr"
)

// prep runs iotimage with args and returns its exit code, stdout and stderr.
func prep(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(args, strings.NewReader(""), &out, &errb)
	return exitCode(err), out.String(), errb.String()
}

func mustPrep(t *testing.T, args ...string) result {
	t.Helper()
	code, out, errs := prep(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("iotimage %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	var r result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	return r
}

// settingsArgs adds every optional setting.
func (f fixture) settingsArgs(t *testing.T) []string {
	t.Helper()
	writeFile(t, filepath.Join(f.dir, "keys.pub"), "# alice\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample alice@laptop\n")
	writeFile(t, filepath.Join(f.dir, "psk"), "correct horse battery\n")
	writeFile(t, filepath.Join(f.dir, "hash"), testHash+"\n")
	return []string{"--hostname", "box-1", "--user", "alice", "--password-hash-file", filepath.Join(f.dir, "hash"), "--ssh-key", filepath.Join(f.dir, "keys.pub"),
		"--wifi", "Workshop", "--wifi-psk-file", filepath.Join(f.dir, "psk"), "--wifi-country", "GB"}
}

// testHash is openssl passwd -6 -salt saltsalt secret.
const testHash = "$6$saltsalt$Rk4Hxx9vYH2JQdWcM0hO9I1q6.ZqO9ZcY8sZ8d9xkYpq6Ks6kQmU6n1I8Kx5bUo6r0i7kq7N2y8XlK3k0kQ6Z/"

// TestPrepareImageTwice prepares a card image made by mkfs.vfat twice:
// fsck.fat finds nothing after either run, mtools reads the contract's
// files back, and the second run leaves the same file set. Clusters of
// 512 bytes, and of 2 and 4 KiB as on real cards (Raspberry Pi OS's 512
// MiB bootfs has 4 KiB clusters).
func TestPrepareImageTwice(t *testing.T) {
	for _, g := range []struct{ sectors, spc int }{{testBootSectors, 1}, {160 << 11, 4}, {300 << 11, 8}} {
		t.Run(fmt.Sprintf("%dB-clusters", g.spc*512), func(t *testing.T) {
			testPrepareImageTwice(t, makeImageGeom(t, g.sectors, g.spc))
		})
	}
}

func testPrepareImageTwice(t *testing.T, img string) {
	f := newFixture(t)
	args := append(f.args("--image", img, "--root-ca", f.rootCA), f.settingsArgs(t)...)

	r1 := mustPrep(t, args...)
	fsckBoot(t, img)
	first := bootFiles(t, img)
	r2 := mustPrep(t, args...)
	fsckBoot(t, img)
	second := bootFiles(t, img)

	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("the second prepare changed the boot partition (-first +second):\n%s", diff)
	}
	if len(r2.Written) != 0 || len(r2.Removed) != 0 || len(r2.FATRepairs) != 0 {
		t.Errorf("second run: written %q, removed %q, FAT repairs %q; want nothing", r2.Written, r2.Removed, r2.FATRepairs)
	}
	if r1.InstanceID == "" || r1.InstanceID != r2.InstanceID {
		t.Errorf("instance ids %q, %q: want the same, non-empty", r1.InstanceID, r2.InstanceID)
	}
	if r1.Partition == nil || r1.Partition.Index != 1 || r1.Partition.Label != "bootfs" || r1.Partition.Start != testBootOffset {
		t.Errorf("partition %+v: want 1, label bootfs, at %d", r1.Partition, testBootOffset)
	}
	if len(r1.Written) != 11 {
		t.Errorf("first run wrote %q, want 11 files", r1.Written)
	}
	if false {
		t.Errorf("partition %+v: want 1, label bootfs, at %d", r1.Partition, testBootOffset)
	}

	want := []string{
		"cmdline.txt", "config.txt", "firstrun.sh",
		"iotagent-setup/iotagent_1.4.0_arm64.deb", "iotagent-setup/setup.sh",
		"iotagent/claim.crt", "iotagent/claim.key", "iotagent/config.json", "iotagent/root-ca.pem",
		"meta-data", "network-config", "user-data",
	}
	if diff := cmp.Diff(want, sortedKeys(second)); diff != "" {
		t.Errorf("files on the boot partition (-want +got):\n%s", diff)
	}
	for name, src := range map[string]string{"iotagent/claim.crt": f.cert, "iotagent/claim.key": f.key, "iotagent/root-ca.pem": f.rootCA, "iotagent-setup/iotagent_1.4.0_arm64.deb": f.deb} {
		data, _ := os.ReadFile(src)
		if second[name] != string(data) {
			t.Errorf("%s differs from %s", name, src)
		}
	}
	if second["iotagent-setup/setup.sh"] != string(setupSh) {
		t.Error("setup.sh differs from the embedded script")
	}
	var cfg struct {
		MQTT         map[string]any `json:"mqtt"`
		Provisioning map[string]any `json:"provisioning"`
		Log          map[string]any `json:"log"`
	}
	if err := json.Unmarshal([]byte(second["iotagent/config.json"]), &cfg); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	for _, c := range []struct {
		key       string
		got, want any
	}{
		{"provisioning.claim_cert", cfg.Provisioning["claim_cert"], "claim.crt"},
		{"provisioning.claim_key", cfg.Provisioning["claim_key"], "claim.key"},
		{"provisioning.template", cfg.Provisioning["template"], "pi-fleet"},
		{"mqtt.root_ca", cfg.MQTT["root_ca"], "root-ca.pem"},
		{"log.format", cfg.Log["format"], "json"},
	} {
		if c.got != c.want {
			t.Errorf("config.json %s = %v, want %v", c.key, c.got, c.want)
		}
	}
	if got := second["cmdline.txt"]; got != strings.TrimSuffix(stockCmdline, "\n")+cmdlineEntry+"\n" {
		t.Errorf("cmdline.txt = %q", got)
	}
	if !strings.Contains(second["meta-data"], "instance-id: "+r1.InstanceID+"\n") {
		t.Errorf("meta-data has not the instance id %s:\n%s", r1.InstanceID, second["meta-data"])
	}
	checkYAML(t, second)
}

// checkYAML parses the cloud-init files (with python3's yaml, as
// cloud-init does) and checks the keys the hook depends on.
func checkYAML(t *testing.T, files map[string]string) {
	t.Helper()
	if err := exec.Command("python3", "-c", "import yaml").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3's yaml is missing (apt-get install python3-yaml): the cloud-init files cannot be checked")
		}
		t.Log("python3's yaml is missing (apt-get install python3-yaml): the cloud-init files are not parsed")
		return
	}
	dir := t.TempDir()
	for _, n := range []string{"user-data", "meta-data", "network-config"} {
		writeFile(t, filepath.Join(dir, n), files[n])
	}
	out, err := exec.Command("python3", "-c", `
import json, sys, yaml
d = sys.argv[1]
print(json.dumps({n: yaml.safe_load(open(d + "/" + n)) for n in ["user-data", "meta-data", "network-config"]}))
`, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("yaml: %v\n%s", err, out)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	ud := got["user-data"]
	if diff := cmp.Diff([]any{[]any{"systemctl", "enable", "--now", "ssh"}, []any{"sh", "/boot/firmware/iotagent-setup/setup.sh"}}, ud["runcmd"]); diff != "" {
		t.Errorf("user-data runcmd (-want +got):\n%s", diff)
	}
	if ud["hostname"] != "box-1" {
		t.Errorf("user-data hostname = %v", ud["hostname"])
	}
	users, _ := ud["users"].([]any)
	if len(users) != 1 || users[0].(map[string]any)["name"] != "alice" || len(users[0].(map[string]any)["ssh_authorized_keys"].([]any)) != 1 ||
		users[0].(map[string]any)["passwd"] != testHash || users[0].(map[string]any)["lock_passwd"] != false {
		t.Errorf("user-data users = %v", ud["users"])
	}
	wifis, _ := got["network-config"]["network"].(map[string]any)["wifis"].(map[string]any)
	wlan, _ := wifis["wlan0"].(map[string]any)
	if ap, _ := wlan["access-points"].(map[string]any)["Workshop"].(map[string]any); ap["password"] != "correct horse battery" || wlan["regulatory-domain"] != "GB" {
		t.Errorf("network-config wifis = %v", wifis)
	}
	if got["meta-data"]["instance-id"] == nil || got["meta-data"]["dsmode"] != "local" {
		t.Errorf("meta-data = %v", got["meta-data"])
	}
}

// TestPrepareOut: --out with a plain .img prepares a copy and leaves the
// original as it was.
func TestPrepareOut(t *testing.T) {
	f := newFixture(t)
	img := makeImage(t)
	before := sha(t, img)
	out := filepath.Join(t.TempDir(), "box.img")
	if r := mustPrep(t, f.args("--image", img, "--out", out)...); r.Target != out {
		t.Errorf("target %s, want %s", r.Target, out)
	}
	if sha(t, img) != before {
		t.Error("--out changed the original image")
	}
	if _, ok := bootFiles(t, out)["iotagent/config.json"]; !ok {
		t.Error("no iotagent/config.json in the --out image")
	}
	if code, _, errs := prep(t, f.args("--image", img, "--out", img)...); code != exitUsage || !strings.Contains(errs, "is --image itself") {
		t.Errorf("--out = --image: exit %d, %s", code, errs)
	}
}

// TestPrepareNewPackage: a second prepare with another .deb and without
// --root-ca leaves one package and no root-ca.pem, with a new instance id.
func TestPrepareNewPackage(t *testing.T) {
	f := newFixture(t)
	img := makeImage(t)
	r1 := mustPrep(t, f.args("--image", img, "--root-ca", f.rootCA)...)
	f.deb = makeDeb(t, f.dir, "1.5.0", "arm64")
	r2 := mustPrep(t, f.args("--image", img)...)
	fsckBoot(t, img)
	files := bootFiles(t, img)
	for _, n := range []string{"iotagent-setup/iotagent_1.4.0_arm64.deb", "iotagent/root-ca.pem"} {
		if _, ok := files[n]; ok {
			t.Errorf("%s is still there", n)
		}
	}
	if _, ok := files["iotagent-setup/iotagent_1.5.0_arm64.deb"]; !ok {
		t.Error("iotagent_1.5.0_arm64.deb is missing")
	}
	if diff := cmp.Diff([]string{"iotagent-setup/iotagent_1.4.0_arm64.deb", "iotagent/root-ca.pem"}, r2.Removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if r1.InstanceID == r2.InstanceID {
		t.Errorf("instance id stayed %s with another package", r1.InstanceID)
	}
	if strings.Count(files["cmdline.txt"], "systemd.run=") != 1 {
		t.Errorf("cmdline.txt = %q: want one systemd.run=", files["cmdline.txt"])
	}
}

// TestPrepareXZ: an .img.xz is decompressed to the name without .xz and
// prepared there; the download stays as it was.
func TestPrepareXZ(t *testing.T) {
	needTools(t, "xz")
	f := newFixture(t)
	img := makeImage(t)
	runCmd(t, "xz", "-0", "-T1", img)
	xzData, _ := os.ReadFile(img + ".xz")
	r := mustPrep(t, f.args("--image", img+".xz")...)
	if r.Target != img {
		t.Errorf("target %s, want %s", r.Target, img)
	}
	fsckBoot(t, img)
	if _, ok := bootFiles(t, img)["iotagent/config.json"]; !ok {
		t.Error("no iotagent/config.json in the decompressed image")
	}
	if after, _ := os.ReadFile(img + ".xz"); !bytes.Equal(after, xzData) {
		t.Error("the .xz changed")
	}
	out := filepath.Join(t.TempDir(), "card.img")
	if r := mustPrep(t, f.args("--image", img+".xz", "--out", out)...); r.Target != out {
		t.Errorf("target %s, want %s", r.Target, out)
	}
	// A damaged download is refused.
	bad := filepath.Join(t.TempDir(), "bad.img.xz")
	os.WriteFile(bad, xzData[:len(xzData)/2], 0o644)
	if code, _, errs := prep(t, f.args("--image", bad)...); code != exitRefused || !strings.Contains(errs, bad) {
		t.Errorf("truncated .xz: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(strings.TrimSuffix(bad, ".xz")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a truncated .xz left %s behind", strings.TrimSuffix(bad, ".xz"))
	}
}

func sha(t *testing.T, p string) [32]byte {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// TestPrepareRefusals: what prepare refuses, with which exit code and
// message, and that it then writes nothing.
func TestPrepareRefusals(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.dir, "bad.json"), `{"mqtt": {"endpoint": "https://example.com", "port": 70000}, "provisioning": {"template": "pi-fleet"}}`)
	otherCert, _ := makeClaim(t, f.dir, "other")
	tests := []struct {
		name  string
		image func(t *testing.T) string
		args  func(f fixture) []string
		code  int
		want  []string // in stderr
	}{
		{"zeros", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "zeros.img")
			os.WriteFile(p, make([]byte, 1<<20), 0o644)
			return p
		}, nil, exitRefused, []string{"zeros.img: not an MBR disk image: no boot signature 55 aa"}},
		{"empty file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "empty.img")
			os.WriteFile(p, nil, 0o644)
			return p
		}, nil, exitRefused, []string{"empty.img: not an MBR disk image: 0 bytes"}},
		{"GPT", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "gpt.img")
			os.WriteFile(p, make([]byte, 1<<20), 0o644)
			writeMBR(t, p, mbrEntry{0xee, 1, 2047})
			return p
		}, nil, exitRefused, []string{"gpt.img: a GPT disk (only a protective MBR): partition entry 1 is of type 0xee"}},
		{"no FAT partition", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "linux.img")
			os.WriteFile(p, make([]byte, 4<<20), 0o644)
			writeMBR(t, p, mbrEntry{0x83, 2048, 4096})
			return p
		}, nil, exitRefused, []string{"linux.img: no FAT partition: found partition 1 (type 0x83, 2 MiB at byte 1048576)"}},
		{"FAT partition not formatted", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "blank.img")
			os.WriteFile(p, make([]byte, 4<<20), 0o644)
			writeMBR(t, p, mbrEntry{0x0c, 2048, 4096})
			return p
		}, nil, exitRefused, []string{"blank.img: partition 1 (type 0x0c, 2 MiB at byte 1048576) is typed FAT but holds no FAT file system"}},
		{"truncated image", func(t *testing.T) string {
			p := makeImage(t)
			os.Truncate(p, testBootOffset+1<<20)
			return p
		}, nil, exitRefused, []string{"raspios.img: no FAT partition: partition 1 (type 0x0c, 36 MiB at byte 4194304) ends at byte 41943040, past the end of the 5242880-byte image"}},
		{"bad config", makeImage, func(f fixture) []string {
			f.config = filepath.Join(f.dir, "bad.json")
			return f.args()
		}, exitUsage, []string{"bad.json (as the device will read it):", "mqtt.endpoint:", "mqtt.port: 70000 is not a TCP port"}},
		{"claim key of another certificate", makeImage, func(f fixture) []string {
			f.cert = otherCert
			return f.args()
		}, exitUsage, []string{"the claim key is not the claim certificate's key"}},
		{"not a deb", makeImage, func(f fixture) []string {
			f.deb = f.config
			return f.args()
		}, exitUsage, []string{"--deb " + f.config + ": not an iotagent .deb: no ar archive header"}},
		{"every input problem at once", makeImage, func(f fixture) []string {
			f.config = filepath.Join(f.dir, "bad.json")
			f.deb = f.config
			psk := filepath.Join(f.dir, "short-psk")
			writeFile(t, psk, "short\n")
			return append(f.args(), "--hostname", "Box_1", "--wifi", "x", "--wifi-psk-file", psk)
		}, exitUsage, []string{"not an iotagent .deb", "mqtt.port", `--hostname "Box_1"`, "--wifi-psk-file"}},
		{"foreign user-data", func(t *testing.T) string {
			p := makeImage(t)
			ud := filepath.Join(t.TempDir(), "user-data")
			writeFile(t, ud, "#cloud-config\nhostname: imager\nusers:\n- name: bob\n")
			runCmd(t, "mcopy", "-o", "-i", p+"@@4194304", ud, "::user-data")
			return p
		}, nil, exitRefused, []string{"user-data was not written by iotimage", "--replace-user-data"}},
		{"foreign firstrun in cmdline.txt", func(t *testing.T) string {
			p := makeImage(t)
			cl := filepath.Join(t.TempDir(), "cmdline.txt")
			writeFile(t, cl, strings.TrimSuffix(stockCmdline, "\n")+" systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot\n")
			runCmd(t, "mcopy", "-o", "-i", p+"@@4194304", cl, "::cmdline.txt")
			return p
		}, nil, exitRefused, []string{"cmdline.txt runs another first-boot script already (systemd.run=/boot/firstrun.sh)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := tt.image(t)
			before := sha(t, img)
			args := f.args()
			if tt.args != nil {
				args = tt.args(f)
			}
			code, out, errs := prep(t, append(args, "--image", img, "--json")...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", code, tt.code, errs)
			}
			for _, w := range tt.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			var ej errorJSON
			if err := json.Unmarshal([]byte(out), &ej); err != nil || ej.Code != tt.code || ej.Error == "" {
				t.Errorf("--json error: %v %+v\n%s", err, ej, out)
			}
			if sha(t, img) != before {
				t.Error("the image changed")
			}
		})
	}
}

// TestPrepareReplaceUserData: --replace-user-data takes over a card that
// Imager customised, and drops Imager's cmdline.txt entry.
func TestPrepareReplaceUserData(t *testing.T) {
	f := newFixture(t)
	img := makeImage(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "user-data"), "#cloud-config\nhostname: imager\n")
	writeFile(t, filepath.Join(dir, "cmdline.txt"), strings.TrimSuffix(stockCmdline, "\n")+" systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n")
	for _, n := range []string{"user-data", "cmdline.txt"} {
		runCmd(t, "mcopy", "-o", "-i", img+"@@4194304", filepath.Join(dir, n), "::"+n)
	}
	mustPrep(t, f.args("--image", img, "--replace-user-data")...)
	files := bootFiles(t, img)
	if got, want := files["cmdline.txt"], strings.TrimSuffix(stockCmdline, "\n")+cmdlineEntry+"\n"; got != want {
		t.Errorf("cmdline.txt = %q\nwant %q", got, want)
	}
	if !isOurs([]byte(files["user-data"])) {
		t.Errorf("user-data not replaced:\n%s", files["user-data"])
	}
}

// TestPrepareBootDir: the content for each --hooks choice, on a mounted
// boot partition (a directory), and switching between them.
func TestPrepareBootDir(t *testing.T) {
	f := newFixture(t)
	boot := t.TempDir()
	writeFile(t, filepath.Join(boot, "cmdline.txt"), stockCmdline)
	writeFile(t, filepath.Join(boot, "network-config"), "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n")
	common := []string{"iotagent-setup/iotagent_1.4.0_arm64.deb", "iotagent-setup/setup.sh", "iotagent/claim.crt", "iotagent/claim.key", "iotagent/config.json"}
	tests := []struct {
		hooks   string
		extra   []string
		files   []string // besides common and the image's own
		cmdline bool
	}{
		{"both", nil, []string{"firstrun.sh", "meta-data", "user-data"}, true},
		{"cloud-init", f.settingsArgs(t), []string{"meta-data", "network-config", "user-data"}, false},
		{"firstrun", nil, []string{"firstrun.sh"}, true},
		{"cloud-init", nil, []string{"meta-data", "user-data"}, false},
	}
	stockNC := true
	for _, tt := range tests {
		r1 := mustPrep(t, append(f.args("--boot-dir", boot, "--hooks", tt.hooks), tt.extra...)...)
		if r2 := mustPrep(t, append(f.args("--boot-dir", boot, "--hooks", tt.hooks), tt.extra...)...); len(r2.Written)+len(r2.Removed) != 0 || r2.InstanceID != r1.InstanceID {
			t.Errorf("--hooks %s again: wrote %q, removed %q, instance id %s then %s", tt.hooks, r2.Written, r2.Removed, r1.InstanceID, r2.InstanceID)
		}
		var got []string
		filepath.WalkDir(boot, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(boot, p)
				got = append(got, rel)
			}
			return nil
		})
		want := append(append([]string{"cmdline.txt"}, common...), tt.files...)
		if contains(tt.files, "network-config") {
			stockNC = false // replaced by iotimage's, removed again without --wifi
		} else if stockNC {
			want = append(want, "network-config") // the image's own stays
		}
		if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
			t.Errorf("--hooks %s %v: files (-want +got):\n%s", tt.hooks, tt.extra, diff)
		}
		cl, _ := os.ReadFile(filepath.Join(boot, "cmdline.txt"))
		if has := strings.Contains(string(cl), cmdlineEntry); has != tt.cmdline || strings.Count(string(cl), "\n") != 1 {
			t.Errorf("--hooks %s: cmdline.txt = %q", tt.hooks, cl)
		}
		nc, _ := os.ReadFile(filepath.Join(boot, "network-config"))
		if contains(tt.files, "network-config") != isOurs(nc) {
			t.Errorf("--hooks %s %v: network-config:\n%s", tt.hooks, tt.extra, nc)
		}
	}
}

func contains(s []string, x string) bool {
	for _, e := range s {
		if e == x {
			return true
		}
	}
	return false
}

func sorted(s []string) []string {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return sortedKeys(m)
}

// TestPrepareDevice: a card is written only after a confirmation.
func TestPrepareDevice(t *testing.T) {
	f := newFixture(t)
	img := makeImage(t)
	code, _, errs := prep(t, f.args("--device", img)...)
	if code != exitRefused || !strings.Contains(errs, "is not a block device") {
		t.Errorf("a regular file as --device: exit %d\n%s", code, errs)
	}
	o := prepareOpts{device: "/dev/sdz"}
	var errb bytes.Buffer
	err := confirm(o, "/dev/sdz", 32<<30, mbr.Partition{Index: 1, Type: 0x0c}, strings.NewReader("yes\n"), &errb)
	var re *refusedError
	if !errors.As(err, &re) || !strings.Contains(re.hint, "--yes") {
		t.Errorf("no terminal: %v (hint %q), want refused with a hint at --yes", err, re.hint)
	}
	o.yes = true
	if err := confirm(o, "/dev/sdz", 32<<30, mbr.Partition{}, strings.NewReader(""), &errb); err != nil {
		t.Errorf("--yes: %v", err)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"prepare"}, "give exactly one of --image, --boot-dir and --device; --deb is required; --config is required"},
		{[]string{"prepare", "--image", "a", "--boot-dir", "b"}, "give exactly one of --image, --boot-dir and --device"},
		{[]string{"prepare", "--hooks", "rc.local"}, `--hooks "rc.local": want both, cloud-init or firstrun`},
		{[]string{"prepare", "--wifi", "x"}, "--wifi and --wifi-psk-file go together"},
		{[]string{"prepare", "--password-hash-file", "x"}, "--password-hash-file goes with --user"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		code, _, errs := prep(t, tt.args...)
		if code != exitUsage || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, errs, tt.want)
		}
	}
	code, out, _ := prep(t, "help", "prepare")
	if code != 0 || !strings.Contains(out, "--replace-user-data") || !strings.Contains(out, "Exit codes:") {
		t.Errorf("help prepare: exit %d\n%s", code, out)
	}
}
