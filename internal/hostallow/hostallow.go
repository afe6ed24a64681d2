// Package hostallow is the one check of where the agent may download from:
// a URL's host against an allow list (jobs.download_hosts,
// ota.allowed_hosts), before the request and at every redirect, so that a
// 302 cannot lead a download outside the list.
package hostallow

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ErrNotAllowed marks a URL or a redirect whose host is not on the list.
var ErrNotAllowed = errors.New("host not allowed")

// maxRedirects is net/http's own limit, kept.
const maxRedirects = 10

// Check reports whether raw is an http or https URL with a host, no user
// info and, when allowed is not empty, a host on it (host or host:port,
// compared without case). A host not on the list is an error wrapping
// ErrNotAllowed that names it.
func Check(raw string, allowed []string) error {
	if raw == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	return checkURL(u, allowed)
}

func checkURL(u *url.URL, allowed []string) error {
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" || u.User != nil {
		return errors.New("needs a host and no user info")
	}
	if len(allowed) == 0 {
		return nil
	}
	for _, h := range allowed {
		if strings.EqualFold(h, u.Host) || strings.EqualFold(h, u.Hostname()) {
			return nil
		}
	}
	return fmt.Errorf("%w: host %q is not allowed", ErrNotAllowed, u.Host)
}

// Client returns a copy of base (nil: http.DefaultClient) that follows a
// redirect only to a URL Check accepts, and at most 10 of them. A refused
// redirect fails the request with an error wrapping ErrNotAllowed that
// names the host it led to.
func Client(base *http.Client, allowed []string) *http.Client {
	if base == nil {
		base = http.DefaultClient
	}
	c := *base
	allowed = append([]string(nil), allowed...)
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if err := checkURL(req.URL, allowed); err != nil {
			return fmt.Errorf("redirect from %s to %s: %w", via[len(via)-1].URL.Host, req.URL.Host, err)
		}
		return nil
	}
	return &c
}
