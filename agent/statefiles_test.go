package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/agent/defender"
	"github.com/iotagent/iotagent/agent/firstboot"
	"github.com/iotagent/iotagent/agent/jobs"
	"github.com/iotagent/iotagent/agent/provision"
	"github.com/iotagent/iotagent/agent/rotate"
	"github.com/iotagent/iotagent/internal/statefile"
	"github.com/iotagent/iotagent/ota"
)

type nopTransport struct{}

func (nopTransport) Publish(context.Context, string, byte, []byte) error { return nil }
func (nopTransport) Subscribe(string, byte, func(string, []byte)) error  { return nil }

// TestEveryStateFileRecovers damages each file the agent owns and runs
// the code that reads it: the agent's part goes on (a usable result, no
// error), the damaged file is kept as FILE.corrupt-TIMESTAMP and the
// journal has the event with the file's path. (The provisioning and
// rotation progress files are read inside their packages, which test
// them the same way.)
func TestEveryStateFileRecovers(t *testing.T) {
	type row struct {
		file    string // under the state dir
		damaged string
		prepare func(t *testing.T, dir string)
		use     func(t *testing.T, dir string) // fails t unless the agent's part goes on
		action  string                         // in the event's Action
	}
	rows := []row{
		{"agent.db", "not a database", nil, func(t *testing.T, dir string) {
			db, _, err := openStateDB(dir, filepath.Join(dir, "agent.db"), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, "started a new database"},
		{"identity/identity.json", `{"thingName": "box-7", "certificateId": "`, func(t *testing.T, dir string) {
			writeCert(t, filepath.Join(dir, "identity", "device.crt"))
		}, func(t *testing.T, dir string) {
			id, err := provision.Load(dir)
			want := certID(t, filepath.Join(dir, "identity", "device.crt"))
			if err != nil || id.ThingName != "box-7" || id.CertificateID != want || id.CertificateFile != filepath.Join(dir, "identity", "device.crt") {
				t.Fatalf("Load = %+v, %v; want box-7 rebuilt with certificate %s", id, err, want)
			}
			if again, err := provision.Load(dir); err != nil || again.ThingName != "box-7" {
				t.Fatalf("the rebuilt identity.json does not load: %+v, %v", again, err)
			}
		}, "rebuilt from"},
		{"identity/identity.json", "\x00\x00\x00\x00", func(t *testing.T, dir string) {
			writeCert(t, filepath.Join(dir, "identity", "device.crt"))
		}, func(t *testing.T, dir string) {
			_, err := provision.Load(dir)
			if !errors.Is(err, provision.ErrNotProvisioned) || !strings.Contains(err.Error(), filepath.Join(dir, "identity", "identity.json")) {
				t.Fatalf("Load = %v; want ErrNotProvisioned naming the file (the device provisions again)", err)
			}
		}, "not rebuilt: the thing name is not legible"},
		{"identity/rotated.json", `{"certificateId":"ab`, nil, func(t *testing.T, dir string) {
			if _, err := rotate.Load(dir); !errors.Is(err, rotate.ErrNotRotated) {
				t.Fatalf("Load = %v; want ErrNotRotated (the configured identity)", err)
			}
		}, "using the identity from before the rotation"},
		{"jobs/inflight.json", `{"job_id":"j1","execu`, nil, func(t *testing.T, dir string) {
			if _, err := jobs.New(jobs.Options{Thing: "box-7", Transport: nopTransport{}, StateDir: dir, Handlers: map[string]jobs.Handler{}}); err != nil {
				t.Fatal(err)
			}
			if inf, err := readInFlight(dir); inf != nil || err != nil {
				t.Fatalf("in flight after recovery: %+v, %v", inf, err)
			}
		}, "hands it out again"},
		{"jobs/last.json", `{"job_id":"j0","sta`, nil, func(t *testing.T, dir string) {
			if _, err := jobs.New(jobs.Options{Thing: "box-7", Transport: nopTransport{}, StateDir: dir, Handlers: map[string]jobs.Handler{}}); err != nil {
				t.Fatal(err)
			}
			if l, err := jobs.ReadLast(dir); l != nil || err != nil {
				t.Fatalf("last job after recovery: %+v, %v", l, err)
			}
		}, "writes a new one"},
		{"defender-report-id", "17\x00\xff", nil, func(t *testing.T, dir string) {
			if _, err := defender.New(defender.Options{Thing: "box-7", Format: defender.FormatJSON, StateDir: dir,
				Publish: func(context.Context, string, []byte) error { return nil }}); err != nil {
				t.Fatal(err)
			}
		}, "from the clock"},
		{"ota/state.json", `{"state":"confirm","active":"a","slo`, func(t *testing.T, dir string) {
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			if err := ota.Init(dir, self, "1.0.0"); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, dir string) {
			u, err := ota.New(ota.Options{StateDir: dir, Version: "1.0.0"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := u.Status(); err == nil {
				t.Fatal("Status read a damaged state.json without an error")
			}
			if u.InTrial() { // what the agent calls at start
				t.Fatal("in trial after recovering")
			}
			st, err := u.Status()
			if err != nil || st.State != ota.Idle || st.Active != "a" {
				t.Fatalf("Status = %+v, %v; want idle on slot a", st, err)
			}
		}, "started again from slot a"},
		{firstboot.ErrorFile, `{"boot_dir":"/boot/iot`, nil, func(t *testing.T, dir string) {
			if p, ok := firstboot.LastProblem(dir); ok {
				t.Fatalf("LastProblem = %+v from a damaged record", p)
			}
		}, "tried again at the next boot"},
		{statefile.JournalFile, "[{", nil, func(t *testing.T, dir string) {
			if err := statefile.Record(dir, statefile.Event{File: "x", Reason: "test"}); err != nil {
				t.Fatal(err)
			}
		}, "started a new journal"},
	}
	for _, r := range rows {
		t.Run(r.file+"/"+r.action, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, r.file)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if r.prepare != nil {
				r.prepare(t, dir)
			}
			if err := os.WriteFile(path, []byte(r.damaged), 0o600); err != nil {
				t.Fatal(err)
			}
			r.use(t, dir)

			moved, _ := filepath.Glob(path + statefile.CorruptInfix + "*")
			if len(moved) != 1 {
				t.Fatalf("moved-aside copies %q, want one", moved)
			}
			if b, _ := os.ReadFile(moved[0]); string(b) != r.damaged {
				t.Errorf("%s holds %q, want the damaged bytes", moved[0], b)
			}
			evs, err := statefile.Events(dir)
			if err != nil || len(evs) == 0 {
				t.Fatalf("journal: %v, %v", evs, err)
			}
			e := evs[0]
			if e.File != path || e.MovedTo != moved[0] || e.Reason == "" || !strings.Contains(e.Action, r.action) {
				t.Errorf("event %+v; want %s moved to %s, action with %q", e, path, moved[0], r.action)
			}
		})
	}
}

func writeCert(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "AWS IoT Certificate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(path, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
}

func certID(t *testing.T, path string) string {
	t.Helper()
	b, _ := os.ReadFile(path)
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM in " + path)
	}
	sum := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(sum[:])
}
