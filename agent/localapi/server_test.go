package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestMain doubles as a helper process: with LOCALAPI_DIAL set it dials
// that socket and exits 0 (connected), 13 (EACCES) or 1 (anything else).
func TestMain(m *testing.M) {
	if p := os.Getenv("LOCALAPI_DIAL"); p != "" {
		c, err := net.Dial("unix", p)
		switch {
		case err == nil:
			c.Close()
			os.Exit(0)
		case errors.Is(err, syscall.EACCES):
			os.Exit(13)
		default:
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// shortDir is a directory with a path short enough for a socket.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "la")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serve runs s on a fresh socket until the test ends.
func serve(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	l, err := Listen(s.o.Socket, s.o.Group)
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // Run listens again; this proves a stale socket is replaced
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, err := os.Stat(s.o.Socket); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left behind after Run: %v", err)
		}
	})
	// wait until it answers
	c := NewClient(s.o.Socket, time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Index(context.Background()); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("server not answering: %v", err)
		}
		time.Sleep(time.Millisecond) // bounded poll for the socket coming up, not synchronising state
	}
}

func testServer(t *testing.T) *Server {
	s := NewServer(Options{Socket: filepath.Join(shortDir(t), "a.sock"), Timeout: 500 * time.Millisecond})
	s.Register("outbox", func(context.Context) (any, error) { return Outbox{Depth: 3, MaxMessages: 10}, nil })
	s.Register("broken", func(context.Context) (any, error) { return nil, errors.New("sensor bus gone") })
	s.Register("slow", func(ctx context.Context) (any, error) { <-ctx.Done(); return nil, ctx.Err() })
	s.Register(SectionLogs, func(context.Context) (any, error) { return Logs{Lines: []string{"a"}}, nil })
	s.RegisterAction(ActionLogLevel, func(_ context.Context, body []byte) (any, error) {
		var l LogLevel
		if err := json.Unmarshal(body, &l); err != nil || l.Level == "" {
			return nil, BadRequest("want {\"level\":\"debug\"}")
		}
		return l, nil
	})
	return s
}

func TestEndpoints(t *testing.T) {
	h := testServer(t).Handler()
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string // substring of the answer
	}{
		{"index", "GET", "/v1", "", 200, `"sections": [`},
		{"section", "GET", "/v1/outbox", "", 200, `"depth": 3`},
		{"provider error", "GET", "/v1/broken", "", 500, `"error": "sensor bus gone"`},
		{"provider timeout", "GET", "/v1/slow", "", 504, `"code": "timeout"`},
		{"not provided", "GET", "/v1/jobs", "", 404, `"code": "not_provided"`},
		{"unknown path", "GET", "/v2/status", "", 404, `"code": "not_found"`},
		{"deep unknown path", "GET", "/v1/a/b/c", "", 404, `"code": "not_found"`},
		{"wrong method", "DELETE", "/v1/outbox", "", 404, `no endpoint DELETE /v1/outbox`},
		{"action", "POST", "/v1/actions/log.level", `{"level":"debug"}`, 200, `"level": "debug"`},
		{"action bad body", "POST", "/v1/actions/log.level", `{"lvl":1}`, 400, `"code": "bad_request"`},
		{"action malformed JSON", "POST", "/v1/actions/log.level", `{"level":`, 400, `not valid JSON`},
		{"action oversized", "POST", "/v1/actions/log.level", `"` + strings.Repeat("x", MaxRequestBytes) + `"`, 413, `"code": "too_large"`},
		{"unknown action", "POST", "/v1/actions/reboot", ``, 404, `"code": "not_provided"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.want) {
				t.Errorf("%s %s = %d %s, want %d containing %q", tt.method, tt.path, w.Code, w.Body, tt.status, tt.want)
			}
		})
	}
}

func TestStatusAggregates(t *testing.T) {
	w := httptest.NewRecorder()
	testServer(t).Handler().ServeHTTP(w, httptest.NewRequest("GET", "/v1/status", nil))
	var got map[string]map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]any{
		"outbox": {"depth": 3.0, "bytes": 0.0, "max_messages": 10.0, "max_bytes": 0.0, "dropped": 0.0, "dropped_telemetry": 0.0, "dropped_alarm": 0.0, "corrupt": 0.0,
			"quarantined": 0.0, "quarantined_total": 0.0, "purged": 0.0,
			"dropped_warning": 0.0, "memory": 0.0, "memory_max": 0.0},
		"broken": {"code": "error", "error": "sensor bus gone"},
		"slow":   {"code": "timeout", "error": "context deadline exceeded"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestClientOverSocket(t *testing.T) {
	s := testServer(t)
	serve(t, s)
	c := NewClient(s.o.Socket, 2*time.Second)
	ctx := context.Background()
	var ob Outbox
	if err := c.Get(ctx, "outbox", &ob); err != nil || ob.Depth != 3 {
		t.Errorf("Get outbox = %+v, %v", ob, err)
	}
	if err := c.Get(ctx, SectionJobs, &struct{}{}); !errors.Is(err, ErrNotProvided) {
		t.Errorf("Get jobs: %v, want ErrNotProvided", err)
	}
	var l LogLevel
	if err := c.Do(ctx, ActionLogLevel, LogLevel{Level: "warn"}, &l); err != nil || l.Level != "warn" {
		t.Errorf("Do log.level = %+v, %v", l, err)
	}
	var apiErr *Error
	if err := c.Do(ctx, ActionLogLevel, nil, nil); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Errorf("Do log.level without body: %v, want a 400 *Error", err)
	}
	if err := c.Get(ctx, "slow", nil); !errors.Is(err, ErrTimeout) {
		t.Errorf("slow provider: %v, want ErrTimeout", err)
	}
	st, err := c.Status(ctx)
	if err != nil || len(st) != 3 {
		t.Errorf("Status = %d sections, %v; want 3 (logs left out)", len(st), err)
	}
}

func TestClientErrors(t *testing.T) {
	dir := shortDir(t)
	ctx := context.Background()

	// no socket at all
	err := NewClient(filepath.Join(dir, "none.sock"), time.Second).Get(ctx, "status", nil)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("missing socket: %v, want ErrNotRunning naming the socket", err)
	}

	// a stale socket: nobody listens
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if err := NewClient(stale, time.Second).Get(ctx, "status", nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stale socket: %v, want ErrNotRunning", err)
	}

	// a daemon that accepts and never answers
	hung := filepath.Join(dir, "hung.sock")
	hl, err := net.Listen("unix", hung)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() { // hold every connection open, unanswered, until the listener closes
		defer close(accepted)
		var held []net.Conn
		for {
			c, err := hl.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	defer func() { hl.Close(); <-accepted }()
	start := time.Now()
	err = NewClient(hung, 200*time.Millisecond).Get(ctx, "status", nil)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "200ms") {
		t.Errorf("hung daemon: %v, want ErrTimeout naming the limit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hung daemon took %s to give up", d)
	}

	// something answering garbage
	garbage := filepath.Join(dir, "garbage.sock")
	gl, err := net.Listen("unix", garbage)
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	go http.Serve(gl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{not json") }))
	if err := NewClient(garbage, time.Second).Get(ctx, "status", &struct{}{}); err == nil || !strings.Contains(err.Error(), "decode answer") {
		t.Errorf("garbage answer: %v, want a decode error", err)
	}
}

func TestListen(t *testing.T) {
	t.Run("mode 0660 and group", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("chown to another group needs root; mode is tested below")
		}
		p := filepath.Join(shortDir(t), "g.sock")
		l, err := Listen(p, "65534")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
			t.Errorf("mode %v, want a socket with 0660", fi.Mode())
		}
		if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != 65534 {
			t.Errorf("gid %d, want 65534", gid)
		}
		entries, _ := os.ReadDir(filepath.Dir(p))
		if len(entries) != 1 {
			t.Errorf("staging left behind: %v", entries)
		}
	})
	t.Run("mode without group", func(t *testing.T) {
		p := filepath.Join(shortDir(t), "m.sock")
		l, err := Listen(p, "")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if fi, err := os.Lstat(p); err != nil || fi.Mode().Perm() != 0o660 {
			t.Errorf("mode %v, %v; want 0660", fi.Mode(), err)
		}
	})
	t.Run("live socket is in use", func(t *testing.T) {
		p := filepath.Join(shortDir(t), "l.sock")
		l, err := Listen(p, "")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := Listen(p, ""); !errors.Is(err, ErrInUse) {
			t.Errorf("second Listen: %v, want ErrInUse", err)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		p := filepath.Join(shortDir(t), "f.sock")
		os.WriteFile(p, []byte("keep me"), 0o600)
		if _, err := Listen(p, ""); !errors.Is(err, ErrNotSocket) {
			t.Errorf("Listen over a file: %v, want ErrNotSocket", err)
		}
		if b, _ := os.ReadFile(p); string(b) != "keep me" {
			t.Error("the file was replaced")
		}
	})
	t.Run("path too long", func(t *testing.T) {
		if _, err := Listen("/tmp/"+strings.Repeat("x", MaxSocketPath), ""); err == nil || !strings.Contains(err.Error(), "bytes, over") {
			t.Errorf("long path: %v", err)
		}
	})
	t.Run("unknown group", func(t *testing.T) {
		if _, err := Listen(filepath.Join(shortDir(t), "u.sock"), "no-such-group-xyz"); err == nil || !strings.Contains(err.Error(), "no-such-group-xyz") {
			t.Errorf("unknown group: %v", err)
		}
	})
}

// TestOtherUsersRefused connects as uid 65534 from a subprocess: refused
// when it is outside the socket's group, let in when the group is its own.
func TestOtherUsersRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a subprocess as another uid; the mode bits are tested in TestListen")
	}
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil { // the directory must not be what refuses
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		group    string
		wantExit int
	}{
		{"outside the group", "", 13},
		{"in the group", "65534", 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("%d.sock", i))
			l, err := Listen(p, tt.group)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			cmd := exec.Command(bin)
			cmd.Env = []string{"LOCALAPI_DIAL=" + p}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err = cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantExit {
				t.Errorf("uid 65534 dial exit %d, want %d; %s", code, tt.wantExit, stderr.String())
			}
		})
	}
}

func FuzzHandler(f *testing.F) {
	f.Add("GET", "/v1/outbox", "")
	f.Add("POST", "/v1/actions/log.level", `{"level":"info"}`)
	f.Add("POST", "/v1/actions/log.level", `[[[[`)
	f.Add("GET", "/v1/%2e%2e/x", "")
	f.Add("PUT", "/", "\x00")
	s := NewServer(Options{Timeout: 50 * time.Millisecond})
	s.Register("outbox", func(context.Context) (any, error) { return Outbox{}, nil })
	s.RegisterAction(ActionLogLevel, func(_ context.Context, body []byte) (any, error) {
		var l LogLevel
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, BadRequest("%v", err)
		}
		return l, nil
	})
	h := s.Handler()
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://iotagent"+path, strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Errorf("%q %q: status %d %s", method, path, w.Code, w.Body)
		}
		if w.Code != http.StatusMethodNotAllowed && w.Code != http.StatusMovedPermanently && !json.Valid(w.Body.Bytes()) {
			t.Errorf("%q %q: answer is not JSON: %q", method, path, w.Body)
		}
	})
}
