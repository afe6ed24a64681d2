package hostallow

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// serveOn starts h on addr (a loopback address other than 127.0.0.1 may
// be missing: then the test skips).
func serveOn(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen on %s: %v", addr, err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func TestClientRefusesRedirectToHostNotAllowed(t *testing.T) {
	evil := serveOn(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "not from the allowed host")
	}))
	good := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, evil.URL+"/x", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/file", http.StatusFound)
		default:
			io.WriteString(w, "file")
		}
	}))
	goodHost, evilHost := strings.TrimPrefix(good.URL, "http://"), strings.TrimPrefix(evil.URL, "http://")
	c := Client(nil, []string{goodHost})

	resp, err := c.Get(good.URL + "/away")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("redirect to %s followed (status %s)", evilHost, resp.Status)
	}
	if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), `host "`+evilHost+`" is not allowed`) {
		t.Errorf("redirect to %s: %v, want ErrNotAllowed naming the host", evilHost, err)
	}

	resp, err = c.Get(good.URL + "/here")
	if err != nil {
		t.Fatalf("redirect within %s: %v", goodHost, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "file" {
		t.Errorf("redirect within the host: %q", b)
	}

	// No list: any host, as before.
	resp, err = Client(nil, nil).Get(good.URL + "/away")
	if err != nil {
		t.Fatalf("no allow list: %v", err)
	}
	resp.Body.Close()
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		url, want string
		allowed   []string
	}{
		{"https://a.example/x", "", []string{"a.example"}},
		{"https://A.example:8443/x", "", []string{"a.example"}},
		{"https://a.example:8443/x", "", []string{"a.example:8443"}},
		{"https://b.example/x", `host "b.example" is not allowed`, []string{"a.example"}},
		{"ftp://a.example/x", `scheme "ftp"`, nil},
		{"https://u@a.example/x", "no user info", nil},
		{"", "missing", nil},
		{"https:///x", "needs a host", nil},
	} {
		err := Check(tc.url, tc.allowed)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Check(%q, %q) = %v, want %q", tc.url, tc.allowed, err, tc.want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("https://a.example/x")
	f.Add("http://A.EXAMPLE:80/")
	f.Add("https://a.example@b.example/")
	f.Add("https://b.example\\@a.example/")
	f.Fuzz(func(t *testing.T, raw string) {
		if Check(raw, []string{"a.example"}) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || !strings.EqualFold(u.Hostname(), "a.example") {
			t.Fatalf("Check accepted %q (host %v, %v)", raw, u, err)
		}
	})
}
