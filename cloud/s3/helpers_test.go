package s3

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/sigv4"
	"github.com/iotagent/iotagent/cloud/store"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testCreds sign the tests' requests; testClockStart is the store's clock
// at the start of a test.
var (
	testCreds      = sigv4.Credentials{AccessKeyID: "AKIDS3TEST", SecretAccessKey: "s3cret"}
	testClockStart = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
)

// testEnv is a Store served by an httptest server through Mount, with a
// fallback handler answering 418 for everything not S3.
type testEnv struct {
	st    *Store
	srv   *httptest.Server
	clock *clock
	dir   string
	db    *store.DB
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "sim.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	e := &testEnv{clock: &clock{t: testClockStart}, dir: dir, db: db}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	e.srv = httptest.NewUnstartedServer(nil)
	e.st, err = New(Options{DB: db, Dir: filepath.Join(dir, "s3"), BaseURL: "http://" + e.srv.Listener.Addr().String() + "/s3", Now: e.clock.Now,
		Credentials: &testCreds})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = e.st.Mount(next)
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}
