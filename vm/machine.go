package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/iotagent/iotagent/vm/vmctlproto"
)

// GuestHost is the address QEMU's guestfwd rules listen on in the guest;
// vmctl forwards the guest's 127.0.0.1:P there.
const GuestHost = "10.0.2.100"

// Options describe one virtual device.
type Options struct {
	// Image is the directory vm/image/build.sh printed: root.img,
	// card.img, vmlinuz, initrd.img.
	Image string
	// Dir is this device's own directory: its disks, its TPM state,
	// QEMU's sockets and the console log.
	Dir string
	// Card, when set, is a card image (an MBR, the FAT boot partition,
	// the root file system: a copy of the image's card.img, prepared by
	// the test) that the VM boots from, as a Raspberry Pi boots from its
	// SD card: at every power on and reboot the kernel command line is
	// read from the boot partition's cmdline.txt, as the Pi's firmware
	// does. Without Card, the VM gets a copy of root.img and a second
	// disk with a fresh boot partition holding Boot.
	Card string
	// Boot is what the boot partition holds, by path
	// ("iotagent/config.json"), besides vmtest/ (vmctl and its forwards),
	// which New adds in both cases.
	Boot map[string][]byte
	// Forward lists host loopback ports that the guest reaches at
	// 127.0.0.1 on the same port (iotsim's MQTT and HTTP ports).
	Forward []int
	// MemoryMB is the guest's memory (default 1024).
	MemoryMB int
	// Interactive connects the serial console to this process's stdin and
	// stdout (make vm) instead of the console log.
	Interactive bool
}

// Machine is one virtual device: its disks and, while it runs, its QEMU
// and swtpm processes.
type Machine struct {
	o                Options
	root, boot, tpm  string
	console, ctlSock string
	bootOffset       int64 // of the boot partition in the card

	mu       sync.Mutex
	on       bool // powered on: Start until PowerCut, Close or a poweroff
	stopping bool // the next exit of QEMU is ours (PowerCut, Close)
	qemu     *exec.Cmd
	qemuDone chan error
	swtpm    *exec.Cmd
	ctl      *ctlConn
	exited   chan struct{} // closed when the machine is off
}

// New makes the device's disks in o.Dir (see Options.Card) and puts vmctl
// and its forward list on the boot partition.
func New(o Options, vmctl string) (*Machine, error) {
	if o.MemoryMB == 0 {
		o.MemoryMB = 1024
	}
	m := &Machine{o: o,
		root: filepath.Join(o.Dir, "root.img"), boot: filepath.Join(o.Dir, "boot.img"),
		tpm: filepath.Join(o.Dir, "tpm"), console: filepath.Join(o.Dir, "console.log"),
		ctlSock: filepath.Join(o.Dir, "vmctl.sock")}
	for _, f := range []string{"root.img", "vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(o.Image, f)); err != nil {
			return nil, fmt.Errorf("image %s: %w (build it with vm/image/build.sh)", o.Image, err)
		}
	}
	if err := os.MkdirAll(m.tpm, 0o700); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for k, v := range o.Boot {
		files[k] = v
	}
	b, err := os.ReadFile(vmctl)
	if err != nil {
		return nil, err
	}
	files["vmtest/vmctl"] = b
	var ports []string
	for _, p := range o.Forward {
		ports = append(ports, strconv.Itoa(p))
	}
	files["vmtest/forward"] = []byte(strings.Join(ports, "\n") + "\n")
	if o.Card != "" {
		if m.bootOffset, err = BootPartitionOffset(o.Card); err != nil {
			return nil, err
		}
		return m, AddToFAT(fatImage(o.Card, m.bootOffset), files)
	}
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(o.Image, "root.img"), m.root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy root disk: %v: %s", err, out)
	}
	if err := MakeFAT(m.boot, "bootfs", 64, files); err != nil {
		return nil, err
	}
	return m, nil
}

// ConsoleLog is the file that keeps the serial console of every boot.
func (m *Machine) ConsoleLog() string { return m.console }

// Start powers the machine on: swtpm, then QEMU, then the connection to
// vmctl's port. It does not wait for the guest; see WaitReady.
func (m *Machine) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.on {
		return errors.New("vm: already running")
	}
	if err := m.launch(); err != nil {
		return err
	}
	m.on, m.exited = true, make(chan struct{})
	return nil
}

// launch starts swtpm and QEMU (m.mu held) and a watcher of QEMU's exit.
func (m *Machine) launch() error {
	if err := m.startTPM(); err != nil {
		return err
	}
	_ = os.Remove(m.ctlSock)
	cmdline := "root=/dev/vda ro fsck.repair=yes console=ttyS0,115200 net.ifnames=0 panic=5"
	disks := []string{"-drive", "file=" + m.root + ",format=raw,if=virtio", "-drive", "file=" + m.boot + ",format=raw,if=virtio"}
	if m.o.Card != "" {
		b, err := ReadFAT(fatImage(m.o.Card, m.bootOffset), "cmdline.txt")
		if err != nil {
			m.stopTPM()
			return fmt.Errorf("the card's cmdline.txt: %w", err)
		}
		cmdline = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
		// A reboot ends QEMU (-no-reboot); the watcher starts it again
		// with the command line the boot partition then holds.
		disks = []string{"-drive", "file=" + m.o.Card + ",format=raw,if=virtio", "-no-reboot"}
	}
	args := []string{
		"-machine", "q35,accel=tcg", "-smp", "2", "-m", strconv.Itoa(m.o.MemoryMB),
		"-nodefaults", "-no-user-config", "-display", "none", "-rtc", "base=utc",
		"-kernel", filepath.Join(m.o.Image, "vmlinuz"), "-initrd", filepath.Join(m.o.Image, "initrd.img"),
		"-append", cmdline,
	}
	args = append(args, disks...)
	args = append(args,
		"-chardev", "socket,id=chrtpm,path="+filepath.Join(m.tpm, "swtpm.sock"),
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=vmctl,path="+m.ctlSock+",server=on,wait=off",
		"-device", "virtserialport,chardev=vmctl,name=vmctl",
		"-netdev", m.netdev(), "-device", "virtio-net-pci,netdev=net0",
		"-device", "virtio-rng-pci",
	)
	if m.o.Interactive {
		args = append(args, "-serial", "mon:stdio")
	} else {
		args = append(args, "-chardev", "file,id=con,path="+m.console+",append=on", "-serial", "chardev:con")
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	if m.o.Interactive {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	} else {
		cmd.Stdout = appendFile(m.console)
		cmd.Stderr = cmd.Stdout
	}
	if err := cmd.Start(); err != nil {
		m.stopTPM()
		return fmt.Errorf("qemu-system-x86_64: %w (apt-get install qemu-system-x86)", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctl, err := dialCtl(m.ctlSock, done)
	if err != nil {
		_ = cmd.Process.Kill()
		<-done
		m.stopTPM()
		return err
	}
	m.qemu, m.qemuDone, m.ctl, m.stopping = cmd, done, ctl, false
	go m.watch(cmd, done)
	return nil
}

// watch waits for QEMU to exit. An exit the test did not cause is the
// guest powering off or, with a card, rebooting: then QEMU starts again
// (the Pi's firmware reading cmdline.txt anew).
func (m *Machine) watch(cmd *exec.Cmd, done chan error) {
	err := <-done
	done <- err // for whoever else waits on it
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.qemu != cmd || m.stopping {
		return // PowerCut or Close handles it
	}
	m.ctl.close()
	m.ctl, m.qemu = nil, nil
	m.stopTPM()
	if m.o.Card != "" && err == nil && m.rebooted() {
		if lerr := m.launch(); lerr == nil {
			return
		} else {
			fmt.Fprintf(appendFile(m.console), "\nvm: starting again after the reboot: %v\n", lerr)
		}
	}
	m.on = false
	close(m.exited)
}

// rebooted reports whether the guest's last words on its console were a
// reboot ("reboot: Restarting system"), not a power off ("reboot: Power
// down"): with -no-reboot QEMU exits the same way for both, and a Pi that
// powers off stays off.
func (m *Machine) rebooted() bool {
	f, err := os.Open(m.console)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 8192 {
		_, _ = f.Seek(st.Size()-8192, io.SeekStart)
	}
	tail, _ := io.ReadAll(f)
	return bytes.LastIndex(tail, []byte("reboot: Restarting system")) > bytes.LastIndex(tail, []byte("reboot: Power down"))
}

// netdev is QEMU's user network, restricted: the guest reaches only
// GuestHost:P for each forwarded port P, which socat connects to
// 127.0.0.1:P on the host.
func (m *Machine) netdev() string {
	s := "user,id=net0,restrict=on,net=10.0.2.0/24"
	for _, p := range m.o.Forward {
		s += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:socat STDIO TCP:127.0.0.1:%d", GuestHost, p, p)
	}
	return s
}

func appendFile(p string) io.Writer {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return io.Discard
	}
	return f
}

// startTPM starts swtpm on the device's TPM state, which survives reboots
// and power cuts like a TPM's NV memory.
func (m *Machine) startTPM() error {
	sock := filepath.Join(m.tpm, "swtpm.sock")
	_ = os.Remove(sock)
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+m.tpm,
		"--ctrl", "type=unixio,path="+sock, "--terminate", "--log", "file="+filepath.Join(m.tpm, "swtpm.log"))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("swtpm: %w (apt-get install swtpm)", err)
	}
	m.swtpm = cmd
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.stopTPM()
	return fmt.Errorf("swtpm: %s did not appear in 5 s (see %s)", sock, filepath.Join(m.tpm, "swtpm.log"))
}

func (m *Machine) stopTPM() {
	if m.swtpm == nil {
		return
	}
	_ = m.swtpm.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = m.swtpm.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = m.swtpm.Process.Kill()
		<-done
	}
	m.swtpm = nil
}

// PowerCut kills QEMU with SIGKILL, as pulling the power: whatever the
// guest had not written to its disks is lost. Start boots it again.
func (m *Machine) PowerCut() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kill()
}

// kill stops QEMU and swtpm (m.mu held).
func (m *Machine) kill() {
	if !m.on {
		return
	}
	m.stopping = true
	if m.ctl != nil {
		m.ctl.close()
		m.ctl = nil
	}
	if m.qemu != nil {
		_ = m.qemu.Process.Kill()
		err := <-m.qemuDone
		m.qemuDone <- err
		m.qemu = nil
	}
	m.stopTPM()
	m.on = false
	close(m.exited)
}

// Running reports whether the machine is on (with a card, also while QEMU
// starts again after a reboot).
func (m *Machine) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on
}

// Wait waits until the machine is off (the guest powered off, or QEMU was
// quit).
func (m *Machine) Wait() {
	m.mu.Lock()
	exited := m.exited
	m.mu.Unlock()
	if exited != nil {
		<-exited
	}
}

// Close stops the machine if it runs.
func (m *Machine) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kill()
}

// Result is a command's outcome in the guest.
type Result struct {
	Exit   int
	Stdout string
	Stderr string
}

// Exec runs argv in the guest (as root, through vmctl) and returns its
// result; err is set when it could not run or did not finish, not for a
// non-zero exit.
func (m *Machine) Exec(ctx context.Context, argv ...string) (Result, error) {
	return m.ExecInput(ctx, nil, argv...)
}

// ExecInput is Exec with stdin.
func (m *Machine) ExecInput(ctx context.Context, stdin []byte, argv ...string) (Result, error) {
	m.mu.Lock()
	ctl := m.ctl
	m.mu.Unlock()
	if ctl == nil {
		return Result{}, errors.New("vm: not running")
	}
	timeout := 5 * time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	resp, err := ctl.call(ctx, Request{Argv: argv, Stdin: stdin, TimeoutS: timeout.Seconds()})
	if err != nil {
		return Result{}, fmt.Errorf("vm: %s: %w", strings.Join(argv, " "), err)
	}
	if resp.Error != "" {
		return Result{Exit: resp.Exit, Stdout: string(resp.Stdout), Stderr: string(resp.Stderr)},
			fmt.Errorf("vm: %s: %s", strings.Join(argv, " "), resp.Error)
	}
	return Result{Exit: resp.Exit, Stdout: string(resp.Stdout), Stderr: string(resp.Stderr)}, nil
}

// Sh runs a shell script in the guest and returns its stdout; a non-zero
// exit is an error that carries its stderr.
func (m *Machine) Sh(ctx context.Context, script string) (string, error) {
	r, err := m.Exec(ctx, "sh", "-c", script)
	if err != nil {
		return r.Stdout, err
	}
	if r.Exit != 0 {
		return r.Stdout, fmt.Errorf("vm: sh -c %q: exit %d: %s%s", script, r.Exit, r.Stderr, r.Stdout)
	}
	return r.Stdout, nil
}

// WaitReady waits until vmctl answers in a boot other than notBoot (the
// boot ID of an earlier boot, or "") and returns the boot ID.
func (m *Machine) WaitReady(ctx context.Context, notBoot string) (string, error) {
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		out, err := m.Sh(pctx, "cat /proc/sys/kernel/random/boot_id")
		cancel()
		if id := strings.TrimSpace(out); err == nil && id != "" && id != notBoot {
			return id, nil
		}
		if !m.Running() {
			return "", fmt.Errorf("vm: QEMU exited (see %s)", m.console)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("vm: no answer from a new boot: %w (console: %s)", ctx.Err(), m.console)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// SetLine drives line GPIO<n> of the virtual header as a sensor wired to
// it would: high pulls it up, low down (gpio-line in the image, which
// writes gpio-sim's pull attribute).
func (m *Machine) SetLine(ctx context.Context, n int, high bool) error {
	level := "low"
	if high {
		level = "high"
	}
	_, err := m.Sh(ctx, fmt.Sprintf("gpio-line %d %s", n, level))
	return err
}

// Request and Response are vmctl's protocol (package vmctlproto).
type (
	Request  = vmctlproto.Request
	Response = vmctlproto.Response
)

// ctlConn is the connection to QEMU's end of the vmctl port. Answers are
// matched to calls by ID; answers to calls nobody waits for any more (a
// boot that ended) are dropped.
type ctlConn struct {
	c       net.Conn
	mu      sync.Mutex
	next    int64
	waiting map[int64]chan Response
	done    chan struct{}
}

func dialCtl(path string, qemuDone chan error) (*ctlConn, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			cc := &ctlConn{c: c, waiting: map[int64]chan Response{}, done: make(chan struct{})}
			go cc.read()
			return cc, nil
		}
		select {
		case err := <-qemuDone:
			qemuDone <- err
			return nil, fmt.Errorf("qemu exited at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("vmctl socket %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *ctlConn) read() {
	defer close(c.done)
	sc := bufio.NewScanner(c.c)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var r Response
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		c.mu.Lock()
		ch := c.waiting[r.ID]
		delete(c.waiting, r.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

func (c *ctlConn) call(ctx context.Context, req Request) (Response, error) {
	ch := make(chan Response, 1)
	c.mu.Lock()
	c.next++
	req.ID = c.next
	c.waiting[req.ID] = ch
	b, _ := json.Marshal(req)
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.c.Write(append(b, '\n'))
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, req.ID)
		c.mu.Unlock()
	}()
	if err != nil {
		return Response{}, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-c.done:
		return Response{}, errors.New("the VM's port closed")
	case <-ctx.Done():
		return Response{}, ctx.Err()
	}
}

func (c *ctlConn) close() {
	_ = c.c.Close()
	<-c.done
}
