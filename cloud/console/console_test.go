package console_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
	"github.com/iotagent/iotagent/cloud/console"
)

// TestConsoleNeedsTheToken: no page, asset, API call or live stream
// without the token; a wrong token is refused; the right one in the URL
// gives an HttpOnly, SameSite=Strict cookie and a redirect to the clean
// URL, after which the cookie alone opens everything.
func TestConsoleNeedsTheToken(t *testing.T) {
	sim := startSim(t)
	base, token := consoleURL(t, sim)
	if h := hostOf(base); h != "127.0.0.1" {
		t.Errorf("console on %s by default, want loopback 127.0.0.1", h)
	}
	if _, _, err := sim.CreateThing("box-1"); err != nil {
		t.Fatal(err)
	}
	paths := []string{"/", "/app.js", "/app.css", "/api/things", "/api/things/box-1", "/api/jobs", "/api/rules",
		"/api/violations", "/api/stream?filter=%23"}
	get := func(path string, mod func(*http.Request)) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if mod != nil {
			mod(req)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, p := range paths {
		for name, mod := range map[string]func(*http.Request){
			"no token": nil,
			"wrong cookie": func(r *http.Request) {
				r.AddCookie(&http.Cookie{Name: console.CookieName, Value: strings.Repeat("0", 64)})
			},
			"wrong bearer": func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token[:63]+"x") },
			"empty cookie": func(r *http.Request) { r.AddCookie(&http.Cookie{Name: console.CookieName, Value: ""}) },
		} {
			if resp := get(p, mod); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s with %s: %s, want 401", p, name, resp.Status)
			}
		}
	}
	if resp := get("?token="+strings.Repeat("a", 64), nil); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("a wrong token in the URL: %s, cookies %v; want 401 and no cookie", resp.Status, resp.Cookies())
	}

	resp := get("?token="+token, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("login link: %s, Location %q; want 303 to /console/", resp.Status, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != console.CookieName || !cookies[0].HttpOnly ||
		cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Path != "/console" {
		t.Fatalf("login cookie %+v: want one HttpOnly, SameSite=Strict cookie for /console", cookies)
	}
	withCookie := func(r *http.Request) { r.AddCookie(cookies[0]) }
	for _, p := range paths[:len(paths)-1] {
		resp := get(p, withCookie)
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Errorf("GET %s with the cookie: %s %s", p, resp.Status, b)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want default-src 'none' and script-src 'self'", p, csp)
		}
	}
	if resp := get("/api/things", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/things with the bearer token: %s", resp.Status)
	}

	// A state-changing request from another origin is refused even with
	// the cookie (a page on another local port is same-site).
	post := func(origin string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/api/things/box-1/shadow", strings.NewReader(`{"state":{"desired":{"alarm":{"armed":true}}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		withCookie(req)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("http://127.0.0.1:1"); code != http.StatusForbidden {
		t.Errorf("POST from another origin: %d, want 403", code)
	}
	if code := post(strings.TrimSuffix(base, "/console")); code != http.StatusOK {
		t.Errorf("POST from the console's origin: %d, want 200", code)
	}
	doc, err := sim.Shadows().Get("box-1", "", nil)
	if err != nil || !strings.Contains(string(doc), `"desired":{"alarm":{"armed":true}}`) {
		t.Errorf("shadow after the console's update: %s, %v", doc, err)
	}
}

// TestConsoleTokenSurvivesRestart: the login link (and so the cookie)
// stays valid when iotsim restarts on the same data dir; a data dir of
// its own gets another token.
func TestConsoleTokenSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	first := cloudtest.Start(t, dir)
	_, tok1 := consoleURL(t, first)
	first.Close()
	_, tok2 := consoleURL(t, cloudtest.Start(t, dir))
	_, tok3 := consoleURL(t, startSim(t))
	if tok1 != tok2 || len(tok1) != 64 {
		t.Errorf("token %q after a restart, was %q", tok2, tok1)
	}
	if tok3 == tok1 {
		t.Error("two data dirs have the same console token")
	}
}

// TestConsoleOff: --console-addr off gives no console_url.
func TestConsoleOff(t *testing.T) {
	sim := cloudtest.StartWith(t, cloud.Options{NoConsole: true})
	if sim.Endpoint().ConsoleURL != "" || sim.Console() != nil {
		t.Errorf("console_url %q with the console off", sim.Endpoint().ConsoleURL)
	}
}
