package ota

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDownloadRefusesRedirectToHostNotAllowed: an allowed host that
// redirects the artifact to another host fails the update, naming that
// host, before any slot is touched; the artifact is never fetched there.
func TestDownloadRefusesRedirectToHostNotAllowed(t *testing.T) {
	f := newFixture(t, 4096)
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2: %v", err)
	}
	evil := httptest.NewUnstartedServer(http.HandlerFunc(f.srv.serve)) // serves the real artifact
	evil.Listener.Close()
	evil.Listener = l
	evil.Start()
	t.Cleanup(evil.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+"/iotagent", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	allowed := strings.TrimPrefix(redirector.URL, "http://")
	evilHost := strings.TrimPrefix(evil.URL, "http://")

	u, err := New(Options{StateDir: f.dir, Version: "1.0.0", TrustedKeys: []string{f.pub}, AllowedHosts: []string{allowed},
		BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond, Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	rel := f.rel
	rel.URL = redirector.URL + "/iotagent"
	err = u.Install(context.Background(), "job-redirect", rel)
	if !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), `host "`+evilHost+`" is not allowed`) {
		t.Fatalf("Install through a redirect to %s: %v, want ErrDownload naming the host", evilHost, err)
	}
	if n := len(f.srv.rangesSeen()); n != 0 {
		t.Errorf("the artifact was fetched %d times from the host not allowed", n)
	}
	st, err := u.Status()
	if err != nil || st.State != Idle || st.Slot != "" || !strings.Contains(st.Reason, evilHost) {
		t.Errorf("state %s slot %q reason %q (%v), want Idle with the reason", st.State, st.Slot, st.Reason, err)
	}
	if _, err := os.Stat(NewLayout(f.dir).SlotBinary(other(st.Active))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the inactive slot was written: %v", err)
	}
	f.check(t, Idle, "1.0.0")
}
