//go:build linux

package tpm

// Tests against swtpm (a real software TPM in its own process, through the
// tcp transport the agent uses in development) and tpm2-tools. Debian
// packages: swtpm, swtpm-tools, tpm2-tools. They skip when those are
// missing, unless CI=true, where they fail.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTools skips the test if a tool is missing, or fails it under CI.
func needTools(t *testing.T, tools ...string) {
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

// swtpmProc is a running swtpm.
type swtpmProc struct {
	cmd  *exec.Cmd
	port int // command port; the control port is port+1
}

// startSwtpm starts swtpm on state dir dir, on a free pair of adjacent
// loopback ports (command port P, control port P+1, as the tcp transport
// expects), and returns once swtpm serves them.
func startSwtpm(t *testing.T, dir string) *swtpmProc {
	t.Helper()
	var errs []string
	for range 5 {
		p, err := trySwtpm(t, dir)
		if err == nil {
			return p
		}
		errs = append(errs, err.Error()) // most likely lost a race for the port
	}
	t.Fatalf("start swtpm:\n%s", strings.Join(errs, "\n"))
	return nil
}

// trySwtpm starts swtpm once. The test binds the control socket itself and
// hands it to swtpm (fd=3); swtpm binds the command port. Readiness without
// sleeping: swtpm answers a control command (CMD_GET_CAPABILITY) only from
// its main loop, which it enters after binding the command port.
func trySwtpm(t *testing.T, dir string) (*swtpmProc, error) {
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
	p := &swtpmProc{cmd: cmd, port: port}
	if err := p.ping(); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("swtpm on port %d: %v\n%s", port, err, out)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.stop(t)
		}
		if t.Failed() {
			t.Logf("swtpm output:\n%s", out)
		}
	})
	return p, nil
}

// ping sends CMD_GET_CAPABILITY on the control channel and reads the
// 8-byte answer (result, capabilities).
func (p *swtpmProc) ping() error {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.port+1))
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

// stop terminates swtpm (SIGTERM: it saves its state and exits) and waits.
func (p *swtpmProc) stop(t *testing.T) {
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

func (p *swtpmProc) device() string { return fmt.Sprintf("tcp://127.0.0.1:%d", p.port) }

// tpm2Tool runs a tpm2-tools command against p.
func (p *swtpmProc) tpm2Tool(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=%d", p.port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestSwtpm(t *testing.T) {
	needTools(t, "swtpm", "tpm2_readpublic")
	dir := t.TempDir()
	sw := startSwtpm(t, dir)

	s, err := OpenTPM(TPMConfig{Device: sw.device()})
	if err != nil {
		t.Fatalf("OpenTPM: %v", err)
	}
	k, err := s.Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	pub := k.Public().(*ecdsa.PublicKey)
	checkSignVerify(t, k)
	checkCSR(t, k)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) { checkMutualTLS(t, k, v) })
	}
	// swtpm serves one client at a time: let tpm2-tools in.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// tpm2-tools sees the key at its handle, with the attributes the agent
	// gave it, and the same public key.
	pemPath := filepath.Join(t.TempDir(), "key.pem")
	out := sw.tpm2Tool(t, "tpm2_readpublic", "-c", "0x81000010", "-f", "pem", "-o", pemPath)
	for _, want := range []string{"fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign", "NIST p256", "ecdsa"} {
		if !strings.Contains(strings.ToLower(out), strings.ToLower(want)) {
			t.Errorf("tpm2_readpublic output lacks %q:\n%s", want, out)
		}
	}
	data, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("tpm2_readpublic wrote no PEM:\n%s", data)
	}
	toolPub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(toolPub) {
		t.Fatal("tpm2_readpublic's public key is not the signer's")
	}
	if out := sw.tpm2Tool(t, "tpm2_getcap", "handles-transient"); strings.Contains(out, "0x80") {
		t.Errorf("transient objects left behind:\n%s", out)
	}

	// Restart swtpm on the same state: the key is still there.
	sw.stop(t)
	sw2 := startSwtpm(t, dir)
	s2, err := OpenTPM(TPMConfig{Device: sw2.device()})
	if err != nil {
		t.Fatalf("OpenTPM after restart: %v", err)
	}
	defer s2.Close()
	k2, err := s2.Signer()
	if err != nil {
		t.Fatalf("Signer after restart: %v", err)
	}
	if !pub.Equal(k2.Public()) {
		t.Fatal("the key after the restart is not the key generated")
	}
	checkSignVerify(t, k2)
}

// TestSwtpmStaleTransients leaves transient objects behind with tpm2-tools,
// as a crashed client would, and checks that OpenTPM clears them.
func TestSwtpmStaleTransients(t *testing.T) {
	needTools(t, "swtpm", "tpm2_createprimary")
	sw := startSwtpm(t, t.TempDir())
	ctx := filepath.Join(t.TempDir(), "primary.ctx")
	for range 3 {
		sw.tpm2Tool(t, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", ctx)
	}
	if out := sw.tpm2Tool(t, "tpm2_getcap", "handles-transient"); strings.Count(out, "0x80") != 3 {
		t.Fatalf("want 3 stale transient objects, tpm2_getcap handles-transient says:\n%s", out)
	}
	s, err := OpenTPM(TPMConfig{Device: sw.device(), Handle: 0x81000011})
	if err != nil {
		t.Fatalf("OpenTPM: %v", err)
	}
	defer s.Close()
	if _, err := s.Generate(); err != nil {
		t.Fatalf("Generate with stale transients: %v", err)
	}
}
