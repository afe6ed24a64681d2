// Command iotvm boots the virtual chocolate box with a root shell on its
// serial console, for anyone to poke at (make vm): iotsim runs in this
// process on loopback, the VM's boot partition holds the agent's config,
// iotsim's claim and the .deb built from this tree, and once the VM is up
// iotvm installs the package with apt and starts the agent, which
// provisions itself (key in the VM's TPM) and connects.
//
// In the VM: iotagent status, journalctl -u iotagent, gpio-line 4 high
// (the PIR sees motion; gpio-line 4 low ends it). On this machine, while
// it runs: the aws CLI or bin/iotsim against the data dir iotvm prints
// (eval "$(bin/iotsim env --data-dir DIR)"). poweroff in the VM (or
// Ctrl-a x) ends it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/ota/otatest"
	"github.com/iotagent/iotagent/vm"
)

func main() {
	image := flag.String("image", "", "the image directory vm/image/build.sh printed (make vm passes it)")
	dir := flag.String("dir", "", "the VM's directory (disks, TPM, iotsim data); default a new temporary one, kept")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "Usage: iotvm -image DIR [-dir DIR]\n\nBoots the virtual chocolate box with a root shell on the serial console (make vm).")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *image == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*image, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "iotvm:", err)
		os.Exit(1)
	}
}

func run(image, dir string) error {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "iotvm-"); err != nil {
			return err
		}
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "iotsim.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	sim, err := cloud.Start(cloud.Options{DataDir: filepath.Join(dir, "iotsim"), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		return fmt.Errorf("iotsim: %w", err)
	}
	defer sim.Close()
	ep := sim.Endpoint()
	fmt.Printf("iotvm: building the .deb and vmctl ...\n")
	b := otatest.NewBuilder(filepath.Join(dir, "bin"))
	deb, err := vm.BuildDeb(b, root, filepath.Join(dir, "dist"), "1.0.0")
	if err != nil {
		return err
	}
	vmctl, err := b.Program("./vm/guest/vmctl", "amd64", "-s -w")
	if err != nil {
		return err
	}
	mqtt, err := vm.Port(ep.MQTTEndpoint)
	if err != nil {
		return err
	}
	http, err := vm.Port(ep.HTTPEndpoint)
	if err != nil {
		return err
	}
	boot, err := vm.BootFiles(ep, vm.ChocolateBox(ep, mqtt, nil), deb)
	if err != nil {
		return err
	}
	m, err := vm.New(vm.Options{Image: image, Dir: dir, Boot: boot, Forward: []int{mqtt, http}, Interactive: true}, vmctl)
	if err != nil {
		return err
	}
	defer m.Close()
	fmt.Printf(`iotvm: directory %s (kept)
iotvm: iotsim: MQTT %s, REST %s; on this machine: eval "$(bin/iotsim env --data-dir %s)"
iotvm: in the VM: iotagent status; journalctl -u iotagent; gpio-line %d high (motion); poweroff (or Ctrl-a x) ends it
`, dir, ep.MQTTEndpoint, ep.HTTPEndpoint, filepath.Join(dir, "iotsim"), vm.MotionGPIO)
	if err := m.Start(); err != nil {
		return err
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if _, err := m.WaitReady(ctx, ""); err != nil {
			fmt.Printf("\r\niotvm: %v\r\n", err)
			return
		}
		if _, err := m.Sh(ctx, vm.InstallScript(deb)+" && systemctl start --no-block iotagent"); err != nil {
			fmt.Printf("\r\niotvm: installing the package: %v\r\n", err)
			return
		}
		fmt.Printf("\r\niotvm: iotagent installed with apt and started (iotagent status)\r\n")
	}()
	m.Wait()
	return nil
}
