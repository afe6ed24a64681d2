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
	"os"
	"syscall"
	"time"
)

// Errors the client returns for the CLI to branch on.
var (
	// ErrNotRunning: no socket, or nothing listening on it.
	ErrNotRunning = errors.New("the agent is not running")
	// ErrPermission: the socket exists but this user may not open it.
	ErrPermission = errors.New("permission denied on the agent's socket")
	// ErrTimeout: the agent accepted the connection but did not answer in time.
	ErrTimeout = errors.New("the agent did not answer in time")
	// ErrNotProvided: the agent has no such section or action.
	ErrNotProvided = errors.New("not provided by the running agent")
)

// MaxResponseBytes bounds an answer the client reads.
const MaxResponseBytes = 8 << 20

// Client talks to the agent over its socket.
type Client struct {
	socket  string
	timeout time.Duration
	hc      *http.Client
}

// NewClient returns a client for the socket at path ("" means
// DefaultSocket); each call gives up after timeout (0 means 10 s).
func NewClient(path string, timeout time.Duration) *Client {
	if path == "" {
		path = DefaultSocket
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:          1,
		ResponseHeaderTimeout: timeout,
	}
	return &Client{socket: path, timeout: timeout, hc: &http.Client{Transport: tr}}
}

// Socket is the path the client connects to.
func (c *Client) Socket() string { return c.socket }

// Get reads section name into v.
func (c *Client) Get(ctx context.Context, name string, v any) error {
	return c.do(ctx, http.MethodGet, "/v1/"+name, nil, v)
}

// Status reads every section at once, each as raw JSON.
func (c *Client) Status(ctx context.Context) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &m)
	return m, err
}

// Index lists what the agent provides.
func (c *Client) Index(ctx context.Context) (Index, error) {
	var ix Index
	err := c.do(ctx, http.MethodGet, "/v1", nil, &ix)
	return ix, err
}

// Do runs action name with body (nil for none) and decodes its answer into v.
func (c *Client) Do(ctx context.Context, name string, body, v any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode %s request: %w", name, err)
		}
	}
	return c.do(ctx, http.MethodPost, "/v1/actions/"+name, b, v)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, v any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://iotagent"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.classify(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return c.classify(ctx, err)
	}
	if len(data) > MaxResponseBytes {
		return fmt.Errorf("%s %s: answer over %d bytes", method, path, MaxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: HTTP %d", method, path, resp.StatusCode)
		}
		if e.Code == "not_provided" {
			return fmt.Errorf("%w: %w", ErrNotProvided, e)
		}
		if e.Code == "timeout" {
			return fmt.Errorf("%w: %w", ErrTimeout, e)
		}
		return e
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) classify(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (no one listens on %s; start it with systemctl start iotagent)", ErrNotRunning, c.socket)
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%w %s (run as root or as a member of its group, localapi.group)", ErrPermission, c.socket)
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: no answer on %s within %s", ErrTimeout, c.socket, c.timeout)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: no answer on %s within %s", ErrTimeout, c.socket, c.timeout)
	}
	return fmt.Errorf("local API %s: %w", c.socket, err)
}
