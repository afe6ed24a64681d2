package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// swtpm is a software TPM that the rehearsal started.
type swtpm struct {
	cmd  *exec.Cmd
	port int // command port; control is port+1
	out  *bytes.Buffer
}

func (s *swtpm) device() string { return fmt.Sprintf("tcp://127.0.0.1:%d", s.port) }

// stop sends SIGTERM (swtpm saves its state) and waits.
func (s *swtpm) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

// startSwtpm starts swtpm with its state in dir on two adjacent free
// loopback ports and returns once it answers on its control channel.
func startSwtpm(ctx context.Context, dir string) (*swtpm, error) {
	if _, err := exec.LookPath("swtpm"); err != nil {
		return nil, errors.New("-tpm auto needs swtpm (apt-get install swtpm swtpm-tools)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var errs []error
	for range 5 {
		s, err := trySwtpm(ctx, dir)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("start swtpm: %w", errors.Join(errs...))
}

// trySwtpm binds the control socket itself and hands it to swtpm (fd 3),
// so that answering on it proves swtpm is in its main loop.
func trySwtpm(ctx context.Context, dir string) (*swtpm, error) {
	var port int
	var ctrl *net.TCPListener
	for range 50 {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		ctrl, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
		l.Close()
		if err == nil {
			break
		}
	}
	if ctrl == nil {
		return nil, errors.New("no two adjacent free ports")
	}
	f, err := ctrl.File()
	ctrl.Close()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", "type=tcp,fd=3",
		"--flags", "not-need-init,startup-clear",
		"--tpmstate", "dir="+dir)
	cmd.ExtraFiles = []*os.File{f}
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &swtpm{cmd: cmd, port: port, out: out}
	if err := s.ping(ctx); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("swtpm on port %d: %w: %s", port, err, out)
	}
	return s, nil
}

// ping sends CMD_GET_CAPABILITY on the control channel.
func (s *swtpm) ping(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", s.port+1))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte{0, 0, 0, 1}); err != nil {
		return err
	}
	var rsp [8]byte
	if _, err := io.ReadFull(c, rsp[:]); err != nil {
		return err
	}
	return nil
}
