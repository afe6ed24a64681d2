package broker

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAcceptErrorsDoNotStopTheListener runs the broker out of file
// descriptors (RLIMIT_NOFILE lowered for the test process, the table filled
// up), so that accepting a connection fails with EMFILE; once descriptors
// are free again, a device must connect over TLS as usual.
func TestAcceptErrorsDoNotStopTheListener(t *testing.T) {
	logs := &logBuffer{}
	e := newEnvWith(t, func(o *Options) {
		o.Authorizer = allowAll{}
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	cert, _ := e.device("box-1")
	addr := e.b.Addrs()[0]

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(highestFD(t) + 64)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var fillers []*os.File
	release := func() {
		for _, f := range fillers {
			f.Close()
		}
		fillers = nil
	}
	t.Cleanup(func() {
		release()
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	})
	for {
		f, err := os.Open(os.DevNull)
		if errors.Is(err, syscall.EMFILE) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fillers = append(fillers, f)
		if len(fillers) > 1000 {
			t.Fatal("RLIMIT_NOFILE not in effect")
		}
	}
	// One descriptor for the client's socket, none left for the broker's
	// accept: the connection waits in the backlog and Accept fails.
	fillers[len(fillers)-1].Close()
	fillers = fillers[:len(fillers)-1]
	half, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	deadline := time.Now().Add(waitFor)
	for e.b.Stats().AcceptErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no accept error recorded")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}

	pc, err := e.paho(addr, cert, "box-1")
	if err != nil {
		t.Fatalf("connect after the accept errors: %v", err)
	}
	pc.Disconnect(0)
	if !strings.Contains(logs.String(), "mqtt accept failed") {
		t.Errorf("accept error not logged:\n%s", logs.String())
	}
}

// highestFD returns the highest open file descriptor of the process.
func highestFD(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	high := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > high {
			high = n
		}
	}
	return high
}
