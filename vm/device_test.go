package vm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	cloudjobs "github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/ota"
	"github.com/iotagent/iotagent/ota/otatest"
	"github.com/iotagent/iotagent/vm"
)

var (
	imageDir  = flag.String("vm.image", "", "the virtual device's image (the directory vm/image/build.sh prints); without it the VM tests are skipped")
	powerCuts = flag.Int("vm.powercuts", 5, "power cuts in the power-cut scenario (make test-vm-long: 50)")
	keep      = flag.Bool("vm.keep", false, "keep the VM's directory (disks, console log, TPM state) and print where")
)

const (
	bucket   = "ota"
	version1 = "1.0.0" // the version the .deb installs
	// raiseWithin is how long after an edge its alarm must be queued
	// durably, for the power-cut scenario's count of alarms raised.
	raiseWithin = 3 * time.Second
)

// device is the virtual chocolate box under test and the iotsim it
// reports to, on the host.
type device struct {
	m       *vm.Machine
	sim     *cloud.Sim
	dir     string
	thing   string
	boot    string // boot ID of the running boot
	key     keyPair
	builder *otatest.Builder
	alarms  *alarmLog
	boots   int    // boots seen, reboots included
	deb     string // the .deb the first boot installs
}

// TestVirtualDevice runs the device scenarios in order, on one VM: each
// builds on the state the previous one left, as on a device in the field.
func TestVirtualDevice(t *testing.T) {
	if *imageDir == "" {
		t.Skip("no -vm.image: make test-vm builds the image and runs these tests")
	}
	d := newDevice(t)
	scenarios := []struct {
		name string
		run  func(*testing.T, *device)
	}{
		{"first_boot", firstBoot},
		{"alarm", alarm},
		{"ota", otaUpdate},
		{"rollback", rollback},
		{"reboot", reboot},
		{"power_cut", powerCut},
		{"hardening", hardening},
	}
	failed := ""
	var summary strings.Builder
	for _, s := range scenarios {
		start := time.Now()
		ok := t.Run(s.name, func(t *testing.T) {
			if failed != "" {
				t.Skipf("skipped: %s failed and the scenarios build on each other", failed)
			}
			s.run(t, d)
		})
		result := "PASS"
		switch {
		case failed != "":
			result = "SKIP"
		case !ok:
			result, failed = "FAIL", s.name
		}
		fmt.Fprintf(&summary, "\n  %-4s %-11s %5.0f s", result, s.name, time.Since(start).Seconds())
	}
	t.Logf("the virtual device's scenarios (%d boots):%s", d.boots, summary.String())
	if failed != "" {
		t.Logf("console log (every boot): %s", d.m.ConsoleLog())
	}
}

func newDevice(t *testing.T) *device {
	t.Helper()
	dir := t.TempDir()
	if *keep {
		var err error
		if dir, err = os.MkdirTemp("", "iotagent-vm-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("VM directory (kept): %s", dir)
	}
	d := &device{dir: dir, builder: otatest.NewBuilder(filepath.Join(dir, "bin")), alarms: &alarmLog{}, key: newKey(t)}
	d.sim = cloudtest.StartWith(t, cloud.Options{
		MQTTConnectInterval: time.Second, // AWS's limit, as the device meets it
		BeforeListen: func(s *cloud.Sim) {
			s.Broker().Handle("alarms/+", d.alarms.add)
		},
	})
	if err := d.sim.Objects().CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	ep := d.sim.Endpoint()
	deb, err := vm.BuildDeb(d.builder, moduleRoot(t), filepath.Join(dir, "dist"), version1)
	if err != nil {
		t.Fatal(err)
	}
	d.deb = deb
	vmctl, err := d.builder.Program("./vm/guest/vmctl", "amd64", "-s -w")
	if err != nil {
		t.Fatal(err)
	}
	boot, err := vm.BootFiles(ep, vm.ChocolateBox(ep, port(t, ep.MQTTEndpoint), []string{d.key.pub}), deb)
	if err != nil {
		t.Fatal(err)
	}
	d.m, err = vm.New(vm.Options{Image: *imageDir, Dir: dir, Boot: boot,
		Forward: []int{port(t, ep.MQTTEndpoint), port(t, ep.HTTPEndpoint)}}, vmctl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.m.Close)
	return d
}

// startVM boots the machine and waits for vmctl in a new boot.
func (d *device) startVM(t *testing.T) {
	t.Helper()
	start := time.Now()
	if err := d.m.Start(); err != nil {
		t.Fatal(err)
	}
	d.waitBoot(t, "", start)
}

func (d *device) waitBoot(t *testing.T, notBoot string, since time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	id, err := d.m.WaitReady(ctx, notBoot)
	if err != nil {
		t.Fatal(err)
	}
	d.boot = id
	d.boots++
	t.Logf("boot %d (%s): vmctl answers %.1f s after the power on or reboot", d.boots, id[:8], time.Since(since).Seconds())
}

// sh runs script in the guest and fails the test on an error.
func (d *device) sh(t *testing.T, timeout time.Duration, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := d.m.Sh(ctx, script)
	if err != nil {
		t.Fatalf("%v\nagent's journal:\n%s", err, d.journal())
	}
	return out
}

// journal is the tail of the agent's journal in the guest, for failures.
func (d *device) journal() string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := d.m.Sh(ctx, "journalctl -b --no-pager -n 60 -u iotagent")
	return out
}

// waitAgent waits until the agent runs (systemd says active) and answers
// iotagent status connected.
func (d *device) waitAgent(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := d.m.Sh(ctx, "systemctl is-active iotagent && iotagent status --json")
		cancel()
		if err == nil {
			var st struct {
				Connection struct {
					Connected bool `json:"connected"`
				} `json:"connection"`
			}
			if i := strings.Index(out, "{"); i >= 0 && json.Unmarshal([]byte(out[i:]), &st) == nil && st.Connection.Connected {
				return
			}
		}
		last = out
		if err != nil {
			last = err.Error()
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("the agent is not running and connected after %s: %s\n%s", timeout, last, d.journal())
}

func (d *device) shadow(t *testing.T) map[string]any {
	t.Helper()
	b, err := d.sim.Shadows().Get(d.thing, "", nil)
	if err != nil {
		return nil
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func reported(doc map[string]any, path ...string) any {
	var v any = doc
	for _, p := range append([]string{"state", "reported"}, path...) {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

// waitFor polls cond every half second until it holds or timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// 1. The .deb installed with apt, the config and claim on the boot
// partition: the unit's first-boot step adopts them on the next boot,
// and the agent provisions with its key in the kernel's TPM, connects
// and syncs its shadow.
func firstBoot(t *testing.T, d *device) {
	d.startVM(t)
	out := d.sh(t, 5*time.Minute, vm.InstallScript(d.deb))
	if !strings.Contains(out, "Setting up iotagent ("+version1+")") {
		t.Fatalf("apt install: %s", out)
	}
	// The packaged unit is enabled but not started by the install; on a
	// fresh card the next boot starts it.
	if st := d.sh(t, time.Minute, "systemctl is-enabled iotagent; ls /dev/tpmrm0 /dev/gpiochip*"); !strings.Contains(st, "enabled") {
		t.Fatalf("after install: %s", st)
	}
	d.rebootAndWait(t)
	waitFor(t, 5*time.Minute, "identity.json (provisioned)", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := d.m.Sh(ctx, "cat /var/lib/iotagent/identity/identity.json")
		var id struct {
			ThingName string `json:"thingName"`
		}
		if err == nil && json.Unmarshal([]byte(out), &id) == nil && id.ThingName != "" {
			d.thing = id.ThingName
			return true
		}
		return false
	})
	t.Logf("provisioned as %s", d.thing)
	d.waitAgent(t, 3*time.Minute)
	waitFor(t, 2*time.Minute, "the shadow to report agent.version "+version1, func() bool {
		return reported(d.shadow(t), "agent", "version") == version1
	})
	// Adopted: the claim is gone from the FAT partition, the key is the
	// TPM's (a CSR), and the files are the agent's own.
	out = d.sh(t, time.Minute, `ls -A /boot/firmware/iotagent; echo ---; stat -c '%U %a %n' /var/lib/iotagent/firstboot/claim.key; iotagent status --json`)
	before, rest, _ := strings.Cut(out, "---")
	if strings.TrimSpace(before) != "" {
		t.Errorf("the boot partition still holds %q after adoption", before)
	}
	if !strings.Contains(rest, "iotagent 600 /var/lib/iotagent/firstboot/claim.key") {
		t.Errorf("adopted claim key: %s", rest)
	}
	if !regexp.MustCompile(`"key_store": *"tpm`).MatchString(rest) && !strings.Contains(rest, "/dev/tpmrm0") {
		t.Errorf("status does not show the TPM key store: %s", rest)
	}
}

// rebootAndWait reboots the guest and waits for vmctl in the new boot.
func (d *device) rebootAndWait(t *testing.T) {
	t.Helper()
	// The boot running now (the device may have rebooted by itself since
	// d.boot, as firstrun.sh does).
	d.boot = strings.TrimSpace(d.sh(t, time.Minute, "cat /proc/sys/kernel/random/boot_id"))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, _ = d.m.Exec(ctx, "systemctl", "--no-block", "reboot")
	cancel()
	d.waitBoot(t, d.boot, start)
}

// 2. Armed through desired state, an edge on the kernel's GPIO line
// raises an alarm that iotsim receives; stopping the agent wakes its
// pending edge wait: it stops within a second.
func alarm(t *testing.T, d *device) {
	d.arm(t, true)
	n := d.alarms.count()
	edge := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.m.SetLine(ctx, vm.MotionGPIO, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the alarm at iotsim", func() bool { return d.alarms.count() > n })
	t.Logf("edge on GPIO4 to alarm at iotsim: %.2f s", time.Since(edge).Seconds())
	a := d.alarms.all()[n]
	if a.Thing != d.thing || a.Sensor != "motion" || a.Event != "motion" {
		t.Errorf("alarm %+v", a)
	}
	if err := d.m.SetLine(ctx, vm.MotionGPIO, false); err != nil {
		t.Fatal(err)
	}
	// The agent waits for the next edge; a stop must wake that wait.
	out := d.sh(t, time.Minute, `s=$(date +%s%N); systemctl stop iotagent; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))`)
	var ms int
	fmt.Sscan(strings.TrimSpace(out), &ms)
	t.Logf("systemctl stop iotagent: %d ms", ms)
	if ms > 1000 {
		t.Errorf("the agent took %d ms to stop (want under 1 s): its edge wait did not wake\n%s", ms, d.journal())
	}
	d.sh(t, time.Minute, "systemctl start iotagent")
	d.waitAgent(t, 2*time.Minute)
}

// arm sets desired alarm.armed and waits for the device to report it.
func (d *device) arm(t *testing.T, on bool) {
	t.Helper()
	doc := fmt.Sprintf(`{"state":{"desired":{"alarm":{"armed":%t}}}}`, on)
	if _, err := d.sim.Shadows().Update(d.thing, "", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, fmt.Sprintf("the device to report alarm.armed %t", on), func() bool {
		return reported(d.shadow(t), "alarm", "armed") == on
	})
}

// release uploads an agent binary for version (built from this tree, or
// the stand-in fakeagent in mode "hang") and creates its OTA job.
func (d *device) release(t *testing.T, jobID, version, fake string) {
	t.Helper()
	var bin string
	var err error
	if fake == "" {
		bin, err = d.builder.Agent(version, "amd64")
	} else {
		bin, err = d.builder.Program("./ota/e2e/testdata/fakeagent", "amd64", "-s -w -X main.mode="+fake+" -X main.version="+version)
	}
	if err != nil {
		t.Fatal(err)
	}
	data := readFile(t, bin)
	key := "iotagent-" + version
	if _, err := d.sim.Objects().Put(bucket, key, "application/octet-stream", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	sig, err := ota.Sign(d.key.sec, "", bytes.NewReader(data), "iotagent", time.Now(), ota.Meta{Version: version, Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256hex(data)
	doc, _ := json.Marshal(map[string]any{"operation": "ota", "version": version, "file": map[string]any{
		"url":  "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/" + bucket + "/" + key + "}",
		"size": len(data), "sha256": sum, "signature": string(sig), "arch": "amd64",
	}})
	d.createJob(t, jobID, string(doc))
}

func (d *device) createJob(t *testing.T, jobID, doc string) {
	t.Helper()
	_, err := d.sim.Jobs().CreateJob(cloudjobs.CreateJobInput{JobID: jobID, Targets: []string{d.sim.Jobs().ThingARN(d.thing)}, Document: doc,
		PresignedURLConfig: &cloudjobs.PresignedURLConfig{RoleARN: "arn:aws:iam::123456789012:role/ota", ExpiresInSec: 3600}})
	if err != nil {
		t.Fatalf("create job %s: %v", jobID, err)
	}
}

// waitJob waits for jobID to be terminal on the device and returns it.
func (d *device) waitJob(t *testing.T, jobID string, timeout time.Duration) cloudjobs.Execution {
	t.Helper()
	var e cloudjobs.Execution
	waitFor(t, timeout, "job "+jobID+" to be terminal", func() bool {
		var err error
		e, err = d.sim.Jobs().DescribeJobExecution(d.thing, jobID, 0)
		return err == nil && e.Status != cloudjobs.StatusQueued && e.Status != cloudjobs.StatusInProgress
	})
	return e
}

// otaStatus is the guest's iotagent ota status --json.
func (d *device) otaStatus(t *testing.T) string {
	t.Helper()
	return d.sh(t, time.Minute, "iotagent ota status --json; true")
}

// 3. An OTA job installs a new version; systemd restarts the agent
// through the prestart; the new version commits; the job is SUCCEEDED.
func otaUpdate(t *testing.T, d *device) {
	d.release(t, "ota-1-1-0", "1.1.0", "")
	e := d.waitJob(t, "ota-1-1-0", 6*time.Minute)
	if e.Status != cloudjobs.StatusSucceeded {
		t.Fatalf("job ota-1.1.0: %s %v\n%s", e.Status, e.StatusDetails, d.journal())
	}
	waitFor(t, time.Minute, "the shadow to report agent.version 1.1.0", func() bool {
		return reported(d.shadow(t), "agent", "version") == "1.1.0"
	})
	st := d.otaStatus(t)
	if !strings.Contains(st, `"1.1.0"`) {
		t.Errorf("ota status after the update: %s", st)
	}
	if out := d.sh(t, time.Minute, "/var/lib/iotagent/ota/current/iotagent version"); !strings.Contains(out, "1.1.0") {
		t.Errorf("ota/current runs %q, want 1.1.0", out)
	}
}

// 4. A version that hangs stops feeding the watchdog; systemd kills it
// (WatchdogSec of the packaged unit); after ota.max_starts starts the
// prestart puts the committed version back; the job is FAILED with why.
func rollback(t *testing.T, d *device) {
	d.release(t, "ota-1-2-0-hangs", "1.2.0", "hang")
	e := d.waitJob(t, "ota-1-2-0-hangs", 10*time.Minute)
	if e.Status != cloudjobs.StatusFailed {
		t.Fatalf("job ota-1.2.0-hangs: %s %v, want FAILED", e.Status, e.StatusDetails)
	}
	t.Logf("job FAILED: %v", e.StatusDetails)
	if len(e.StatusDetails) == 0 {
		t.Errorf("the FAILED job says no reason")
	}
	d.waitAgent(t, 3*time.Minute)
	if out := d.sh(t, time.Minute, "/var/lib/iotagent/ota/current/iotagent version"); !strings.Contains(out, "1.1.0") {
		t.Errorf("after the rollback ota/current runs %q, want 1.1.0", out)
	}
	kills := d.sh(t, time.Minute, "journalctl -b --no-pager -u iotagent | grep -c 'Watchdog timeout' || true")
	t.Logf("watchdog kills of the hanging version: %s", strings.TrimSpace(kills))
	if strings.TrimSpace(kills) == "0" {
		t.Errorf("systemd's watchdog never killed the hanging version\n%s", d.journal())
	}
}

// 5. The reboot job reboots the VM; the job is SUCCEEDED after the boot.
func reboot(t *testing.T, d *device) {
	before := d.boot
	start := time.Now()
	d.createJob(t, "reboot-1", `{"operation":"reboot"}`)
	d.waitBoot(t, before, start)
	e := d.waitJob(t, "reboot-1", 5*time.Minute)
	if e.Status != cloudjobs.StatusSucceeded {
		t.Fatalf("job reboot-1: %s %v\n%s", e.Status, e.StatusDetails, d.journal())
	}
	d.waitAgent(t, 2*time.Minute)
}

// 6. Power cuts at random points of an OTA update or of a burst of
// alarms. After each boot: a working slot, every job terminal, no alarm
// lost, and the agent's files pass its own checks (iotagent diag).
func powerCut(t *testing.T, d *device) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	d.arm(t, true)
	var lost, dup, raised, delivered int
	for i := 0; i < *powerCuts; i++ {
		var what string
		var check func()
		if i%2 == 0 {
			version := fmt.Sprintf("1.3.%d", i)
			job := "ota-" + strings.ReplaceAll(version, ".", "-") + "-cut"
			d.release(t, job, version, "")
			delay := time.Duration(rng.IntN(20000)) * time.Millisecond
			what = fmt.Sprintf("OTA %s, cut after %s", version, delay.Round(time.Millisecond))
			time.Sleep(delay) // the random point of the update to cut at
			check = func() {
				e := d.waitJob(t, job, 8*time.Minute)
				if e.Status != cloudjobs.StatusSucceeded && len(e.StatusDetails) == 0 {
					t.Errorf("%s: job %s %s with no reason", what, job, e.Status)
				}
				what += ": job " + string(e.Status)
			}
		} else {
			edges := 4 + rng.IntN(8)
			cutAt := rng.IntN(edges)
			what = fmt.Sprintf("burst of %d alarms, cut at edge %d", edges, cutAt)
			before := d.alarms.count()
			var driven []time.Time
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			for k := 0; k < edges && k <= cutAt; k++ {
				if err := d.m.SetLine(ctx, vm.MotionGPIO, true); err != nil {
					t.Fatal(err)
				}
				driven = append(driven, time.Now())
				if err := d.m.SetLine(ctx, vm.MotionGPIO, false); err != nil {
					t.Fatal(err)
				}
				time.Sleep(1100 * time.Millisecond) // distinct alarm timestamps (seconds)
			}
			cancel()
			cut := time.Now()
			check = func() {
				// An edge counts as raised once the agent has had
				// raiseWithin to queue it durably (the alarm scenario
				// shows edge to iotsim, delivery included, in under a
				// second); each must reach iotsim after the reboot.
				var must int
				for _, e := range driven {
					if cut.Sub(e) >= raiseWithin {
						must++
					}
				}
				waitFor(t, 3*time.Minute, "the queued alarms to arrive", func() bool { return d.alarms.count()-before >= must })
				got := d.alarms.since(before)
				seen := map[int64]int{}
				for _, a := range got {
					seen[a.Timestamp]++
				}
				l := 0
				for _, e := range driven[:must] {
					if !seenNear(seen, e.Unix()) {
						l++
					}
				}
				for _, c := range seen {
					dup += c - 1
				}
				raised += must
				delivered += must - l
				lost += l
				what += fmt.Sprintf(": %d raised, %d delivered, %d lost", must, must-l, l)
			}
		}
		d.m.PowerCut()
		d.startVM(t)
		d.waitAgent(t, 5*time.Minute)
		check()
		// A working slot and files that pass the agent's own checks.
		if out := d.sh(t, time.Minute, "/var/lib/iotagent/ota/current/iotagent version"); !strings.Contains(out, "iotagent") {
			t.Errorf("%s: ota/current: %s", what, out)
		}
		diag := d.sh(t, 2*time.Minute, "iotagent diag --json; true")
		failedChecks, stateFiles := diagFails(diag)
		if len(failedChecks) > 0 {
			t.Errorf("%s: diag FAILs %v\n%s", what, failedChecks, diag)
		}
		what += "; state files: " + stateFiles
		t.Logf("power cut %d/%d: %s", i+1, *powerCuts, what)
	}
	t.Logf("alarms: %d raised, %d delivered, %d lost, %d duplicates", raised, delivered, lost, dup)
	if lost != 0 {
		t.Errorf("%d alarms lost", lost)
	}
}

func seenNear(seen map[int64]int, ts int64) bool {
	return seen[ts] > 0 || seen[ts-1] > 0 || seen[ts+1] > 0
}

// diagFails lists the checks iotagent diag --json reports as FAIL, and the
// state files check's detail.
func diagFails(out string) (fails []string, stateFiles string) {
	var checks []struct {
		Check  string `json:"check"`
		Status string `json:"status"`
		Detail string `json:"detail"`
	}
	if i := strings.Index(out, "["); i < 0 || json.Unmarshal([]byte(out[i:]), &checks) != nil {
		return []string{"diag printed no JSON"}, ""
	}
	for _, c := range checks {
		if strings.EqualFold(c.Status, "fail") {
			fails = append(fails, c.Check+": "+c.Detail)
		}
		if c.Check == "state files" {
			stateFiles = c.Status + " " + c.Detail
		}
	}
	return fails, stateFiles
}

// 7. The packaged unit ran every scenario as shipped: no drop-in, and
// systemd-analyze security's score for it.
func hardening(t *testing.T, d *device) {
	out := d.sh(t, 2*time.Minute, "systemctl show -p FragmentPath -p DropInPaths iotagent; systemd-analyze security iotagent --no-pager | tail -1")
	t.Logf("%s", strings.TrimSpace(out))
	if !strings.Contains(out, "FragmentPath=/lib/systemd/system/iotagent.service") || !strings.Contains(out, "DropInPaths=\n") {
		t.Errorf("the unit is not the packaged one as shipped (a drop-in or an override):\n%s", out)
	}
	if !strings.Contains(out, "Overall exposure level for iotagent.service") {
		t.Errorf("systemd-analyze security printed no score: %s", out)
	}
}

// alarmLog keeps the alarms iotsim received.
type alarmLog struct {
	mu sync.Mutex
	a  []alarmMsg
}

type alarmMsg struct {
	Thing     string `json:"thing"`
	Sensor    string `json:"sensor"`
	Event     string `json:"event"`
	Timestamp int64  `json:"timestamp"`
}

func (l *alarmLog) add(_ *broker.Principal, _ string, payload []byte) {
	var m alarmMsg
	_ = json.Unmarshal(payload, &m)
	l.mu.Lock()
	l.a = append(l.a, m)
	l.mu.Unlock()
}

func (l *alarmLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.a)
}

func (l *alarmLog) all() []alarmMsg { return l.since(0) }

func (l *alarmLog) since(i int) []alarmMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]alarmMsg(nil), l.a[i:]...)
}
