// Package vm runs the virtual device: a small Debian (bookworm, amd64)
// under qemu-system with software emulation, with the real operating
// system around the agent that the unit tests replace with stand-ins.
//
// What is real inside the VM:
//
//   - systemd as PID 1, with udev, dbus, logind and polkit; the project's
//     .deb is installed with apt as a user installs it, and its unit runs
//     with all its hardening.
//   - A kernel GPIO chip: gpio-sim (built for the image's kernel by
//     vm/image/build.sh) with 28 lines named GPIO0..GPIO27 like a
//     Raspberry Pi's header, reached through the GPIO character device,
//     the only GPIO path on a Raspberry Pi 5. The host drives input lines
//     (Machine.SetLine).
//   - A kernel TPM: swtpm on the host is the VM's TPM (tpm-tis), which
//     the guest kernel exposes as /dev/tpmrm0 through its resource manager.
//   - Reboots (the guest reboots itself; QEMU restarts the same kernel)
//     and power cuts (Machine.PowerCut: QEMU killed with SIGKILL, so that
//     what the guest had not written to its disk is lost, then booted
//     again from the same disk files).
//   - The boot partition: a FAT file system (the second disk, label
//     bootfs) mounted at /boot/firmware, as on Raspberry Pi OS.
//
// The network: QEMU's user network with restrict=on, so the guest reaches
// nothing but the forwards the host sets up. iotsim runs on the host (it
// must outlive the VM's power cuts to count what the device delivered);
// each of its loopback ports P is reached in the guest at 127.0.0.1:P
// through the guest's vmctl (vm/guest/vmctl), a QEMU guestfwd to
// 10.0.2.100:P and socat on the host. Nothing else leaves the VM.
//
// The host talks to the VM over a virtio-serial port: vmctl runs the
// commands Machine.Exec sends and answers with their output. The serial
// console is kept in a file (Machine.ConsoleLog).
//
// The image is built once by vm/image/build.sh and cached; see
// docs/testing.md for what the VM covers and what it does not, and
// make test-vm and make vm to run it.
package vm
