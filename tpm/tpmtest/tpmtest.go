//go:build linux

// Package tpmtest starts swtpm, a real software TPM in its own process,
// for tests: reached through the tcp transport the agent uses in
// development (identity.tpm.device "tcp://127.0.0.1:PORT"). Debian
// packages: swtpm, swtpm-tools (and tpm2-tools for tests that use them).
// Tests skip when swtpm is missing, unless CI=true, where they fail.
package tpmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NeedTools skips the test if a tool is missing, or fails it under CI.
func NeedTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			msg := fmt.Sprintf("%s not installed (apt-get install swtpm swtpm-tools tpm2-tools)", tool)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// Swtpm is a running swtpm.
type Swtpm struct {
	cmd  *exec.Cmd
	Port int // command port; the control port is Port+1
}

// Start starts swtpm on state dir dir, on a free pair of adjacent
// loopback ports (command port P, control port P+1, as the tcp transport
// expects), and returns once swtpm serves them.
func Start(t *testing.T, dir string) *Swtpm {
	t.Helper()
	var errs []string
	for range 5 {
		p, err := try(t, dir)
		if err == nil {
			return p
		}
		errs = append(errs, err.Error()) // most likely lost a race for the port
	}
	t.Fatalf("start swtpm:\n%s", strings.Join(errs, "\n"))
	return nil
}

// try starts swtpm once. The test binds the control socket itself and
// hands it to swtpm (fd=3); swtpm binds the command port. Readiness without
// sleeping: swtpm answers a control command (CMD_GET_CAPABILITY) only from
// its main loop, which it enters after binding the command port.
func try(t *testing.T, dir string) (*Swtpm, error) {
	var port int
	var ctrlL *net.TCPListener
	for range 50 {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		ctrlL, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
		l.Close() // free the command port for swtpm
		if err == nil {
			break
		}
	}
	if ctrlL == nil {
		return nil, errors.New("no two adjacent free ports on 127.0.0.1")
	}
	ctrlF, err := ctrlL.File()
	ctrlL.Close() // the dup in ctrlF keeps the socket listening
	if err != nil {
		return nil, err
	}
	defer ctrlF.Close()
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", "type=tcp,fd=3",
		"--flags", "not-need-init,startup-clear",
		"--tpmstate", "dir="+dir)
	cmd.ExtraFiles = []*os.File{ctrlF}
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	p := &Swtpm{cmd: cmd, Port: port}
	if err := p.Ping(); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("swtpm on port %d: %v\n%s", port, err, out)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.Stop(t)
		}
		if t.Failed() {
			t.Logf("swtpm output:\n%s", out)
		}
	})
	return p, nil
}

// Ping sends CMD_GET_CAPABILITY on the control channel and reads the
// 8-byte answer (result, capabilities).
func (p *Swtpm) Ping() error {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port+1))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte{0, 0, 0, 1}); err != nil {
		return fmt.Errorf("control channel: %w", err)
	}
	var rsp [8]byte
	if _, err := io.ReadFull(c, rsp[:]); err != nil {
		return fmt.Errorf("control channel: %w", err)
	}
	if rc := binary.BigEndian.Uint32(rsp[:4]); rc != 0 {
		return fmt.Errorf("control channel: CMD_GET_CAPABILITY returned %#x", rc)
	}
	return nil
}

// Stop terminates swtpm (SIGTERM: it saves its state and exits) and waits.
func (p *Swtpm) Stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop swtpm: %v", err)
	}
	if err := p.cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || !ee.Exited() && ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Fatalf("swtpm: %v", err)
		}
	}
}

// Device is the agent's identity.tpm.device for p.
func (p *Swtpm) Device() string { return fmt.Sprintf("tcp://127.0.0.1:%d", p.Port) }
