package cloud_test

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/cloud/cloudtest"
)

// TestWrapHTTP: Options.WrapHTTP sees every request of the HTTP listener,
// S3 object downloads included, and can answer for it.
func TestWrapHTTP(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	sim := cloudtest.StartWith(t, cloud.Options{WrapHTTP: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Range"))
			mu.Unlock()
			if r.URL.Path == "/teapot" {
				w.WriteHeader(http.StatusTeapot)
				return
			}
			next.ServeHTTP(w, r)
		})
	}})
	if _, err := sim.Objects().Put("ota", "a.bin", "", bytes.NewReader([]byte("0123456789"))); err != nil {
		t.Fatal(err)
	}
	url, err := sim.Objects().PresignGet("ota", "a.bin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Range", "bytes=4-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "456789" {
		t.Errorf("ranged GET through the wrapper: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get(sim.Endpoint().HTTPEndpoint + "/teapot")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("the wrapper's own answer: %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"GET /s3/ota/a.bin bytes=4-", "GET /teapot "}, seen); diff != "" {
		t.Errorf("requests seen (-want +got):\n%s", diff)
	}
}
