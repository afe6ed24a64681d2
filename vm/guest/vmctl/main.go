// Command vmctl is the virtual device's test port (see package vm). It
// runs in the VM, started by systemd from the boot partition, and does two
// things:
//
//   - It runs the commands the host sends over the virtio-serial port
//     /dev/virtio-ports/vmctl, one JSON request a line, and answers each
//     with its exit code and output (package vm's Request and Response).
//   - It forwards the VM's loopback ports listed in
//     /boot/firmware/vmtest/forward (one port a line) to the same port on
//     10.0.2.100, which QEMU's guestfwd connects to iotsim on the host, so
//     that the agent reaches iotsim at 127.0.0.1 (the name in iotsim's
//     server certificate) and the presigned URLs iotsim makes work as on
//     the host.
//
// It is test plumbing only: the image has it, the iotagent package does not.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/vm/vmctlproto"
)

const (
	portPath    = "/dev/virtio-ports/vmctl"
	forwardPath = "/boot/firmware/vmtest/forward"
	hostAddr    = "10.0.2.100"
	maxOutput   = 4 << 20
)

type (
	request  = vmctlproto.Request
	response = vmctlproto.Response
)

func main() {
	log.SetFlags(0)
	if err := forward(); err != nil {
		log.Printf("vmctl: forward: %v", err)
	}
	for {
		if err := serve(); err != nil {
			log.Printf("vmctl: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// serve answers requests on the port until it fails or ends.
func serve() error {
	f, err := os.OpenFile(portPath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var mu sync.Mutex // one response written at a time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			log.Printf("vmctl: bad request: %v", err)
			continue
		}
		go func() {
			b, _ := json.Marshal(run(req))
			mu.Lock()
			defer mu.Unlock()
			if _, err := f.Write(append(b, '\n')); err != nil {
				log.Printf("vmctl: answer %d: %v", req.ID, err)
			}
		}()
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}

// run runs one request's command.
func run(req request) response {
	resp := response{ID: req.ID, Exit: -1}
	if len(req.Argv) == 0 {
		resp.Error = "no argv"
		return resp
	}
	timeout := time.Duration(req.TimeoutS * float64(time.Second))
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	cmd.Stdin = bytes.NewReader(req.Stdin)
	var out, errb capped
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	resp.Stdout, resp.Stderr = out.b.Bytes(), errb.b.Bytes()
	var ee *exec.ExitError
	switch {
	case err == nil:
		resp.Exit = 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		resp.Exit = ee.ExitCode()
	case ctx.Err() != nil:
		resp.Error = fmt.Sprintf("timed out after %s", timeout)
	default:
		resp.Error = err.Error()
	}
	return resp
}

// capped keeps the first maxOutput bytes written to it.
type capped struct{ b bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxOutput - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// forward listens on 127.0.0.1:PORT for each port in forwardPath and
// connects each connection to hostAddr:PORT.
func forward() error {
	b, err := os.ReadFile(forwardPath)
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(string(b)) {
		port, err := strconv.Atoi(f)
		if err != nil || port <= 0 || port > 65535 {
			return fmt.Errorf("%s: bad port %q", forwardPath, f)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", f))
		if err != nil {
			return err
		}
		go accept(ln, net.JoinHostPort(hostAddr, f))
	}
	return nil
}

func accept(ln net.Listener, to string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("vmctl: accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			u, err := net.DialTimeout("tcp", to, 10*time.Second)
			if err != nil {
				log.Printf("vmctl: forward to %s: %v", to, err)
				return
			}
			defer u.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(u, c)
			go pipe(c, u)
			<-done
			<-done
		}()
	}
}
