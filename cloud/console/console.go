package console

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/defender"
	"github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/rules"
	"github.com/iotagent/iotagent/cloud/shadow"
)

//go:embed ui
var uiFS embed.FS

// CookieName is the console's session cookie: the token itself, HttpOnly
// and SameSite=Strict, scoped to /console.
const CookieName = "iotsim_console"

// Path is where the console is served.
const Path = "/console"

// DefaultViewerBuffer is how many messages one live view may fall behind
// before its messages are dropped (and counted).
const DefaultViewerBuffer = 256

// contentSecurityPolicy lets the page load its own script and style only:
// no inline script, no event-handler attributes, no other origin.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Tapper is the broker as the console watches it.
type Tapper interface {
	Tap(filter string, fn broker.TapFunc) (stop func(), err error)
}

// Options are the services the console shows; all are required but
// Logger and Now.
type Options struct {
	Token    string
	Broker   Tapper
	Registry *registry.Registry
	Shadows  *shadow.Service
	Jobs     *jobs.Service
	Defender *defender.Service
	Rules    *rules.Engine
	// Presence tracks the fleet's connections; it must watch the broker
	// before the broker accepts its first connection.
	Presence *Presence
	// ViewerBuffer bounds each live view's queue; 0 means
	// DefaultViewerBuffer.
	ViewerBuffer int
	Logger       *slog.Logger
	Now          func() time.Time
}

// Console serves the web console. Create it with New and serve it (it is
// an http.Handler); Close ends its live views.
type Console struct {
	o   Options
	log *slog.Logger
	mux *http.ServeMux
	hub hub

	mu      sync.Mutex // guards the fields below and the tap's life
	closed  bool
	stopTap func() // the broker tap of the live views, nil when none is open
}

// New checks o and builds the console. It starts nothing.
func New(o Options) (*Console, error) {
	var missing []string
	for name, ok := range map[string]bool{"Token": o.Token != "", "Broker": o.Broker != nil, "Registry": o.Registry != nil,
		"Shadows": o.Shadows != nil, "Jobs": o.Jobs != nil, "Defender": o.Defender != nil, "Rules": o.Rules != nil, "Presence": o.Presence != nil} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, errors.New("console: missing " + strings.Join(missing, ", "))
	}
	if o.ViewerBuffer <= 0 {
		o.ViewerBuffer = DefaultViewerBuffer
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Console{o: o, log: o.Logger}
	c.hub.buffer = o.ViewerBuffer
	c.routes()
	return c, nil
}

// Close ends every live view and removes the broker tap. It is
// idempotent; live views opened after it are refused.
func (c *Console) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.hub.closeAll()
	if c.stopTap != nil {
		c.stopTap()
		c.stopTap = nil
	}
}

// errClosed: the console is closing.
var errClosed = errors.New("console: closed")

// addViewer opens a live view. The broker is tapped only while a view is
// open: with no console page open, the console costs the broker nothing.
func (c *Console) addViewer(filters []string) (*viewer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	v := c.hub.add(filters)
	if c.stopTap == nil {
		// mochi's "#" matches $aws topics too; each view's filters
		// decide with AWS's matching. Retained messages, which mochi
		// hands a new subscription at once, are not shown: the first
		// view would get them and the next ones not.
		c.hub.muted.Store(true)
		stop, err := c.o.Broker.Tap("#", c.hub.publish)
		c.hub.muted.Store(false)
		if err != nil {
			c.hub.remove(v)
			return nil, fmt.Errorf("console: live view: %w", err)
		}
		c.stopTap = stop
	}
	return v, nil
}

func (c *Console) removeViewer(v *viewer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hub.remove(v)
	if c.hub.n.Load() == 0 && c.stopTap != nil {
		c.stopTap()
		c.stopTap = nil
	}
}

// URL is the login link of a console listening on hostPort.
func URL(hostPort, token string) string {
	return "http://" + hostPort + Path + "?token=" + url.QueryEscape(token)
}

// ServeHTTP serves the console under Path; every request needs the token.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.URL.Path == "/" {
		http.Redirect(w, r, Path+"/", http.StatusFound)
		return
	}
	if r.URL.Path != Path && !strings.HasPrefix(r.URL.Path, Path+"/") {
		http.NotFound(w, r)
		return
	}
	if q := r.URL.Query(); q.Has("token") {
		if !tokenEqual(q.Get("token"), c.o.Token) {
			c.refuse(w, r, "the token in the URL is wrong")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: c.o.Token, Path: Path,
			HttpOnly: true, SameSite: http.SameSiteStrictMode})
		// The clean URL: the token leaves the address bar and history.
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		if u.Path == Path {
			u.Path = Path + "/"
		}
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return
	}
	if !c.authorized(r) {
		c.refuse(w, r, "no token: open the console_url of endpoint.json (in the data dir)")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
		http.Error(w, "console: cross-site request refused", http.StatusForbidden)
		return
	}
	c.mux.ServeHTTP(w, r)
}

func (c *Console) authorized(r *http.Request) bool {
	if ck, err := r.Cookie(CookieName); err == nil && tokenEqual(ck.Value, c.o.Token) {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && tokenEqual(tok, c.o.Token)
}

// sameOrigin refuses a state-changing request another site's page made
// (the SameSite cookie already keeps it out of such requests).
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		return false
	}
	return true
}

func (c *Console) refuse(w http.ResponseWriter, r *http.Request, why string) {
	c.log.Info("console request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "why", why)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte("iotsim console: " + why + "\n"))
}

func (c *Console) routes() {
	c.mux = http.NewServeMux()
	static, _ := fs.Sub(uiFS, "ui")
	files := http.StripPrefix(Path+"/", http.FileServerFS(static))
	c.mux.Handle("GET "+Path+"/{$}", files)
	c.mux.Handle("GET "+Path+"/app.js", files)
	c.mux.Handle("GET "+Path+"/app.css", files)
	c.mux.HandleFunc("GET "+Path+"/api/things", c.listThings)
	c.mux.HandleFunc("GET "+Path+"/api/things/{thing}", c.getThing)
	c.mux.HandleFunc("POST "+Path+"/api/things/{thing}/shadow", c.updateShadow)
	c.mux.HandleFunc("GET "+Path+"/api/jobs", c.listJobs)
	c.mux.HandleFunc("POST "+Path+"/api/jobs", c.createJob)
	c.mux.HandleFunc("GET "+Path+"/api/violations", c.listViolations)
	c.mux.HandleFunc("GET "+Path+"/api/rules", c.listRules)
	c.mux.HandleFunc("GET "+Path+"/api/stream", c.stream)
}
