package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSafePath(t *testing.T) {
	root := t.TempDir()
	files := filepath.Join(root, "files")
	outside := filepath.Join(root, "outside")
	for _, d := range []string{files, filepath.Join(files, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(files, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "x"), filepath.Join(files, "link.bin")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(files, "a.bin"), ""},
		{filepath.Join(files, "sub", "a.bin"), ""},
		{files + "/../outside/a.bin", `".." is not allowed`},
		{filepath.Join(outside, "a.bin"), "not inside a configured download directory"},
		{files + "2/a.bin", "not inside a configured download directory"},
		{filepath.Join(files, "escape", "a.bin"), "leads out of"},
		{filepath.Join(files, "link.bin"), "not a regular file"},
		{files, "not inside"},
		{"a.bin", "absolute"},
		{filepath.Join(files, "nope", "a.bin"), "no such file"},
		{"", "absolute"},
	} {
		_, err := safePath(tc.path, []string{files})
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("safePath(%q) = %v, want %q", tc.path, err, tc.want)
		}
	}
}

func TestDownloadFileJob(t *testing.T) {
	body := []byte("calibration table v7\n")
	sum := sha256.Sum256(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	svc := newFakeService(t)
	startRunner(t, svc, t.TempDir(), map[string]Handler{
		"download-file": DownloadFile(DownloadOptions{Dirs: []string{dir}, AllowedHosts: []string{host}, MaxBytes: 1024}),
	}, nil)
	doc := func(u, p, sha string) string {
		return `{"operation":"download-file","url":"` + u + `","path":"` + p + `","sha256":"` + sha + `"}`
	}
	svc.Queue("ok-1", doc(srv.URL+"/cal", filepath.Join(dir, "cal.txt"), hex.EncodeToString(sum[:])))
	svc.Queue("badsum-1", doc(srv.URL+"/cal", filepath.Join(dir, "bad.txt"), strings.Repeat("0", 64)))
	svc.Queue("host-1", doc("http://"+url.PathEscape("example.com")+"/cal", filepath.Join(dir, "x"), ""))
	svc.Queue("trav-1", doc(srv.URL+"/cal", dir+"/../../etc/passwd", ""))
	for _, tc := range []struct{ id, status, want string }{
		{"ok-1", StatusSucceeded, ""},
		{"badsum-1", StatusFailed, "sha256 mismatch"},
		{"host-1", StatusRejected, `host "example.com" is not allowed`},
		{"trav-1", StatusRejected, `".." is not allowed`},
	} {
		e := svc.waitStatus(t, tc.id)
		if e.status != tc.status || !strings.Contains(e.details["reason"], tc.want) {
			t.Errorf("%s: %s %v", tc.id, e.status, e.details)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "cal.txt")); string(got) != string(body) {
		t.Errorf("file %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.txt")); !os.IsNotExist(err) {
		t.Errorf("bad download left a file: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func FuzzParseOperation(f *testing.F) {
	f.Add([]byte(`{"operation":"ota"}`))
	f.Add([]byte(`{"operation":null}`))
	f.Add([]byte(`[1]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		op, err := parseOperation(b)
		if err == nil && op == "" {
			t.Fatal("empty operation accepted")
		}
	})
}

func FuzzCleanDetails(f *testing.F) {
	f.Add("reason", "line1\nline2\x00")
	f.Add("bad key!", strings.Repeat("é", 2000))
	f.Fuzz(func(t *testing.T, k, v string) {
		for kk, vv := range cleanDetails(map[string]string{k: v}) {
			if !validDetailKey(kk) || vv == "" || len([]rune(vv)) > maxDetailValue {
				t.Fatalf("bad detail %q=%q", kk, vv)
			}
			for _, r := range vv {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("control character in %q", vv)
				}
			}
		}
	})
}

// TestDownloadFileRefusesRedirectToHostNotAllowed: a download-file job
// whose allowed host answers 302 to a host not in jobs.download_hosts
// fails naming that host, and stores nothing.
func TestDownloadFileRefusesRedirectToHostNotAllowed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2: %v", err)
	}
	fetched := make(chan struct{}, 1)
	evil := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched <- struct{}{}
		_, _ = w.Write([]byte("attacker's content\n"))
	}))
	evil.Listener.Close()
	evil.Listener = l
	evil.Start()
	t.Cleanup(evil.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+"/cal", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	host, evilHost := strings.TrimPrefix(srv.URL, "http://"), strings.TrimPrefix(evil.URL, "http://")
	dir := t.TempDir()
	svc := newFakeService(t)
	startRunner(t, svc, t.TempDir(), map[string]Handler{
		"download-file": DownloadFile(DownloadOptions{Dirs: []string{dir}, AllowedHosts: []string{host}, MaxBytes: 1024}),
	}, nil)
	svc.Queue("redirect-1", `{"operation":"download-file","url":"`+srv.URL+`/cal","path":"`+filepath.Join(dir, "cal.txt")+`"}`)
	e := svc.waitStatus(t, "redirect-1")
	if e.status != StatusFailed || !strings.Contains(e.details["reason"], `host "`+evilHost+`" is not allowed`) {
		t.Errorf("redirect to %s: %s %v, want FAILED naming the host", evilHost, e.status, e.details)
	}
	select {
	case <-fetched:
		t.Errorf("the host not allowed was asked for the file")
	default:
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("files stored: %v", left)
	}
}
