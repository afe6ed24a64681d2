package vm_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/ota/otatest"
	"github.com/iotagent/iotagent/vm"
)

// TestFlashedCard boots the virtual device from a card image as Raspberry
// Pi OS ships it (an MBR, the FAT boot partition, the root file system)
// onto whose boot partition `iotimage prepare` wrote the .deb, the
// agent's config, the claim and the first-boot hooks; nothing else is
// done to the card. Once with cloud-init's hook (Trixie: NoCloud from the
// boot partition), once with firstrun.sh named in cmdline.txt (Bookworm).
// The device installs the package, provisions with the claim and
// reports; a second boot changes nothing.
func TestFlashedCard(t *testing.T) {
	if *imageDir == "" {
		t.Skip("no -vm.image: make test-vm builds the image and runs these tests")
	}
	root := moduleRoot(t)
	b := otatest.NewBuilder(t.TempDir())
	iotimage, err := b.Program("./cmd/iotimage", "", "")
	if err != nil {
		t.Fatal(err)
	}
	vmctl, err := b.Program("./vm/guest/vmctl", "amd64", "-s -w")
	if err != nil {
		t.Fatal(err)
	}
	deb, err := vm.BuildDeb(b, root, filepath.Join(t.TempDir(), "dist"), version1)
	if err != nil {
		t.Fatal(err)
	}
	for _, hooks := range []string{"cloud-init", "firstrun"} {
		t.Run(hooks, func(t *testing.T) {
			start := time.Now()
			flashAndBoot(t, iotimage, vmctl, deb, hooks)
			t.Logf("%s: %.0f s", hooks, time.Since(start).Seconds())
		})
	}
}

func flashAndBoot(t *testing.T, iotimage, vmctl, deb, hooks string) {
	dir := t.TempDir()
	if *keep {
		var err error
		if dir, err = os.MkdirTemp("", "iotagent-card-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("card directory (kept): %s", dir)
	}
	sim := cloudtest.Start(t, "")
	ep := sim.Endpoint()
	card := filepath.Join(dir, "card.img")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(*imageDir, "card.img"), card).CombinedOutput(); err != nil {
		t.Fatalf("copy card.img: %v: %s", err, out)
	}
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, vm.ChocolateBox(ep, port(t, ep.MQTTEndpoint), nil), 0o600); err != nil {
		t.Fatal(err)
	}
	prepare := []string{"prepare", "--image", card, "--deb", deb, "--config", cfg,
		"--claim-cert", ep.ClaimCert, "--claim-key", ep.ClaimKey, "--root-ca", ep.RootCA,
		"--hooks", hooks, "--hostname", "chocolate-box", "--json"}
	// Twice: preparing a card again is idempotent.
	for i := 0; i < 2; i++ {
		out, err := exec.Command(iotimage, prepare...).CombinedOutput()
		if err != nil {
			t.Fatalf("iotimage %s: %v\n%s", strings.Join(prepare, " "), err, out)
		}
	}
	m, err := vm.New(vm.Options{Image: *imageDir, Dir: dir, Card: card,
		Forward: []int{port(t, ep.MQTTEndpoint), port(t, ep.HTTPEndpoint)}}, vmctl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	d := &device{m: m, sim: sim}
	defer func() {
		if t.Failed() {
			t.Logf("console log (every boot): %s", m.ConsoleLog())
		}
	}()
	d.startVM(t)
	var id string
	waitFor(t, 10*time.Minute, "identity.json (the hook installed the package, the agent provisioned)", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := m.Sh(ctx, "cat /var/lib/iotagent/identity/identity.json")
		var ident struct {
			ThingName string `json:"thingName"`
		}
		if err == nil && json.Unmarshal([]byte(out), &ident) == nil && ident.ThingName != "" {
			d.thing, id = ident.ThingName, out
			return true
		}
		return false
	})
	t.Logf("provisioned as %s", d.thing)
	d.waitAgent(t, 5*time.Minute)
	waitFor(t, 2*time.Minute, "the shadow to report agent.version "+version1, func() bool {
		return reported(d.shadow(t), "agent", "version") == version1
	})
	state := d.sh(t, time.Minute, cardState)
	for _, want := range []string{"claim: gone", "cmdline: clean", "setup: done iotagent_" + version1} {
		if !strings.Contains(state, want) {
			t.Errorf("after the first boot, want %q in:\n%s", want, state)
		}
	}
	if hooks == "cloud-init" && !strings.Contains(state, "cloud-init: status: done") {
		t.Errorf("cloud-init did not finish well:\n%s\n%s", state,
			d.sh(t, time.Minute, "cloud-init status --long; grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log | tail -20"))
	}
	t.Logf("after the first boot:\n%s", state)

	// A second boot changes nothing: the same identity, the same boot
	// partition, the hook not run again, the agent connected.
	d.rebootAndWait(t)
	d.waitAgent(t, 5*time.Minute)
	if again := d.sh(t, time.Minute, "cat /var/lib/iotagent/identity/identity.json"); again != id {
		t.Errorf("the identity changed on the second boot:\n%s\nwas\n%s", again, id)
	}
	if again := d.sh(t, time.Minute, cardState); again != state {
		t.Errorf("the second boot changed the card:\n%s\nwas\n%s", again, state)
	}
}

// cardState describes what the first-boot hooks leave: the boot
// partition's iotagent/ (emptied by the adoption), cmdline.txt, the hook's
// marker and log, cloud-init's status.
const cardState = `
ls -A /boot/firmware/iotagent | grep -q . && echo "claim: still there: $(ls -A /boot/firmware/iotagent)" || echo "claim: gone"
grep -q systemd.run /boot/firmware/cmdline.txt && echo "cmdline: $(cat /boot/firmware/cmdline.txt)" || echo "cmdline: clean"
echo "setup: done $(cat /var/lib/iotagent-setup/done 2>/dev/null)"
echo "setup.log: $(md5sum < /boot/firmware/iotagent-setup/setup.log)"
echo "cloud-init: $(timeout 600 cloud-init status --wait 2>/dev/null | tail -1)"
ls /boot/firmware
`
