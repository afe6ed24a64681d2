package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// DefaultSocket is where the agent listens unless configured otherwise.
const DefaultSocket = "/run/iotagent/iotagent.sock"

// Limits on what a client may send.
const (
	MaxRequestBytes = 64 << 10 // an action's body
	MaxHeaderBytes  = 16 << 10
	// MaxSocketPath is the longest socket path accepted: the kernel's
	// limit is 107 bytes, and the socket is bound under a temporary name
	// in the same directory first, which is up to 16 bytes longer than
	// the directory.
	MaxSocketPath = 100
)

// DefaultTimeout bounds one provider or action call.
const DefaultTimeout = 5 * time.Second

var (
	// ErrInUse means another process answers on the socket already.
	ErrInUse = errors.New("local API socket in use")
	// ErrNotSocket means something other than a socket is at the path.
	ErrNotSocket = errors.New("not a socket")
)

// Provider fills one read section. It must return within ctx.
type Provider func(ctx context.Context) (any, error)

// Action performs one action. body is the request's JSON (nil when
// empty). A returned *Error sets the HTTP status and code.
type Action func(ctx context.Context, body []byte) (any, error)

// Error is an error answer: {"error": Message, "code": Code}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// BadRequest returns an *Error with status 400 for an action to return.
func BadRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: fmt.Sprintf(format, args...)}
}

// Options configure a Server.
type Options struct {
	Socket  string        // "" means DefaultSocket
	Group   string        // group name or numeric gid that may connect; "" keeps the process's group
	Timeout time.Duration // per provider or action; 0 means DefaultTimeout
}

// Server serves the local API. Register providers and actions, then Run.
type Server struct {
	o       Options
	mu      sync.RWMutex
	reads   map[string]Provider
	actions map[string]Action
}

// NewServer returns a server with nothing registered. It starts nothing.
func NewServer(o Options) *Server {
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return &Server{o: o, reads: map[string]Provider{}, actions: map[string]Action{}}
}

// Register makes p fill the section name (replacing any before it).
func (s *Server) Register(name string, p Provider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads[name] = p
}

// RegisterAction makes a handle POST /v1/actions/name.
func (s *Server) RegisterAction(name string, a Action) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actions[name] = a
}

// Index lists the registered sections and actions, sorted.
func (s *Server) Index() Index {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ix := Index{Sections: []string{}, Actions: []string{}}
	for n := range s.reads {
		ix.Sections = append(ix.Sections, n)
	}
	for n := range s.actions {
		ix.Actions = append(ix.Actions, n)
	}
	slices.Sort(ix.Sections)
	slices.Sort(ix.Actions)
	return ix
}

// Handler is the API's HTTP handler (Run serves it on the socket).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Index()) })
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/{section}", s.section)
	mux.HandleFunc("POST /v1/actions/{action}", s.action)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{Status: http.StatusNotFound, Code: "not_found",
			Message: fmt.Sprintf("no endpoint %s %s; GET /v1 lists them", r.Method, r.URL.Path)})
	})
	return http.MaxBytesHandler(mux, MaxRequestBytes)
}

func (s *Server) provider(name string) (Provider, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.reads[name]
	return p, ok
}

func (s *Server) section(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("section")
	p, ok := s.provider(name)
	if !ok {
		writeError(w, s.notProvided(name))
		return
	}
	v, err := s.call(r.Context(), p)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) notProvided(name string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_provided",
		Message: fmt.Sprintf("the agent provides no section %q (it has %v)", name, s.Index().Sections)}
}

// status answers every section at once, each as its provider's value or
// {"error": ...}; providers run concurrently, each within the timeout.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	reads := make(map[string]Provider, len(s.reads))
	for n, p := range s.reads {
		if n != SectionLogs { // big, and not part of a status screen
			reads[n] = p
		}
	}
	s.mu.RUnlock()
	out := make(map[string]any, len(reads))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for n, p := range reads {
		wg.Go(func() {
			v, err := s.call(r.Context(), p)
			if err != nil {
				v = errorBody(err)
			}
			mu.Lock()
			out[n] = v
			mu.Unlock()
		})
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("action")
	s.mu.RLock()
	a, ok := s.actions[name]
	s.mu.RUnlock()
	if !ok {
		writeError(w, &Error{Status: http.StatusNotFound, Code: "not_provided",
			Message: fmt.Sprintf("the agent has no action %q (it has %v)", name, s.Index().Actions)})
		return
	}
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
			Message: fmt.Sprintf("request body over %d bytes", MaxRequestBytes)})
		return
	case err != nil:
		writeError(w, BadRequest("read request: %v", err))
		return
	}
	if len(body) == 0 {
		body = nil
	} else if !json.Valid(body) {
		writeError(w, BadRequest("request body is not valid JSON"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.o.Timeout)
	defer cancel()
	v, err := a(ctx, body)
	if err != nil {
		writeError(w, timeoutError(ctx, err))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) call(ctx context.Context, p Provider) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	v, err := p(ctx)
	if err != nil {
		return nil, timeoutError(ctx, err)
	}
	return v, nil
}

func timeoutError(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return &Error{Status: http.StatusGatewayTimeout, Code: "timeout", Message: err.Error()}
	}
	return err
}

func errorBody(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		if e.Status == 0 {
			e.Status = http.StatusInternalServerError
		}
		if e.Code == "" {
			e.Code = "error"
		}
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: "error", Message: err.Error()}
}

func writeError(w http.ResponseWriter, err error) {
	e := errorBody(err)
	writeJSON(w, e.Status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(&Error{Code: "error", Message: "encode answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// Run listens on the socket and serves until ctx ends, then removes the
// socket and returns after every request has finished (or 5 s).
func (s *Server) Run(ctx context.Context) error {
	l, err := Listen(s.o.Socket, s.o.Group)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      s.o.Timeout + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(l) }()
	select {
	case err = <-done: // Serve failed on its own
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if hs.Shutdown(sctx) != nil {
			hs.Close()
		}
		cancel()
		err = <-done
	}
	_ = os.Remove(s.o.Socket)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("local API: %w", err)
}

// Listen creates the socket at path with mode 0660, owned by group when
// it is set. The socket is bound under a temporary name inside a fresh
// 0700 directory next to path, given its mode and group there, and only
// then renamed into place: at no moment can a user outside the group
// reach it. A stale socket (nothing answers) is replaced; a live one is
// ErrInUse. The listener does not remove path on Close: Run does.
func Listen(path, group string) (*net.UnixListener, error) {
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("local API socket %s: path is %d bytes, over %d", path, len(path), MaxSocketPath)
	}
	gid := -1
	if group != "" {
		g, err := LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("local API socket group: %w", err)
		}
		gid = g
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("local API socket dir: %w", err)
	}
	if err := checkStale(path); err != nil {
		return nil, err
	}
	tmpDir, err := os.MkdirTemp(dir, ".s")
	if err != nil {
		return nil, fmt.Errorf("local API socket: staging dir: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("local API socket: listen: %w", err)
	}
	l.SetUnlinkOnClose(false)
	fail := func(step string, err error) (*net.UnixListener, error) {
		l.Close()
		return nil, fmt.Errorf("local API socket %s: %s: %w", path, step, err)
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		return fail("chmod", err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(fmt.Sprintf("chown to group %s", group), err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail("move into place", err)
	}
	return l, nil
}

// checkStale removes a socket at path that nothing answers on.
func checkStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("local API socket %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("local API socket %s: %w: refusing to replace it", path, ErrNotSocket)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("local API socket %s: %w: another iotagent is running (or set localapi.socket)", path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("local API socket %s: check for a running agent: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("local API socket %s: remove stale socket: %w", path, err)
	}
	return nil
}

// LookupGroup resolves a group name or numeric gid.
func LookupGroup(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return -1, fmt.Errorf("group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}
