package ota

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const trailer = "\nOTATEST-VERSION="

// fakeBinary is a minimal ELF executable header for machine, a payload of
// size bytes and a version trailer. debug/elf accepts it; it is never run.
func fakeBinary(machine elf.Machine, version string, size int) []byte {
	var b bytes.Buffer
	hdr := make([]byte, 64)
	copy(hdr, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	binary.LittleEndian.PutUint16(hdr[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(hdr[18:], uint16(machine))
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint16(hdr[52:], 64)
	binary.LittleEndian.PutUint16(hdr[54:], 56)
	binary.LittleEndian.PutUint16(hdr[58:], 64)
	b.Write(hdr)
	pad := make([]byte, size)
	_, _ = rand.Read(pad)
	b.Write(pad)
	b.WriteString(trailer + version + "\n")
	return b.Bytes()
}

// versionOf reads the trailer of a fake binary.
func versionOf(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	i := bytes.LastIndex(b, []byte(trailer))
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(string(b[i+len(trailer):]))
}

func deviceMachine() elf.Machine { return elf.Machine(elfMachine[DeviceArch]) }

// keyPair is a minisign key pair made once per test binary.
var keyPair = sync.OnceValues(func() ([]byte, []byte) {
	pub, sec, err := GenerateKey(nil, "")
	if err != nil {
		panic(err)
	}
	return pub, sec
})

// sign signs data as version for this device's CPU.
func sign(t testing.TB, sec, data []byte, version string) string {
	t.Helper()
	return signFor(t, sec, data, Meta{Version: version, Arch: DeviceArch})
}

func signFor(t testing.TB, sec, data []byte, m Meta) string {
	t.Helper()
	sig, err := Sign(sec, "", bytes.NewReader(data), "iotagent", time.Unix(1700000000, 0), m)
	if err != nil {
		t.Fatal(err)
	}
	return string(sig)
}

// artifactServer serves one artifact with http.ServeContent (Range,
// If-Range, ETag) and can drop the connection after some bytes.
type artifactServer struct {
	*httptest.Server
	mu     sync.Mutex
	data   []byte
	ranges []string // the Range header of every request ("" for none)
	cutAt  int      // drop the first full response after this many bytes; 0: never
	status int      // answer every request with this status, when set
}

func newArtifactServer(t testing.TB, data []byte) *artifactServer {
	s := &artifactServer{data: data}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *artifactServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	data, cut, status := s.data, s.cutAt, s.status
	if cut > 0 && r.Header.Get("Range") == "" {
		s.cutAt = 0
	}
	s.mu.Unlock()
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	sum := sha256.Sum256(data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	if cut > 0 && r.Header.Get("Range") == "" {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:cut])
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	http.ServeContent(w, r, "iotagent", time.Unix(1700000000, 0), bytes.NewReader(data))
}

func (s *artifactServer) rangesSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// fixture is a state dir initialised with v1 in slot a and a signed v2
// artifact served over HTTP.
type fixture struct {
	dir    string
	v1, v2 []byte
	srv    *artifactServer
	rel    Release
	pub    string
}

func newFixture(t testing.TB, size int) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, v1: fakeBinary(deviceMachine(), "1.0.0", size), v2: fakeBinary(deviceMachine(), "2.0.0", size)}
	src := filepath.Join(dir, "v1")
	if err := os.WriteFile(src, f.v1, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, src, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	pub, sec := keyPair()
	f.pub = string(pub)
	f.srv = newArtifactServer(t, f.v2)
	f.rel = f.release(t, f.v2, "2.0.0", sec)
	return f
}

func (f *fixture) release(t testing.TB, data []byte, version string, sec []byte) Release {
	sum := sha256.Sum256(data)
	return Release{Version: version, URL: f.srv.URL + "/iotagent", Size: int64(len(data)),
		SHA256: hex.EncodeToString(sum[:]), Signature: sign(t, sec, data, version), Arch: DeviceArch}
}

func (f *fixture) updater(t testing.TB, version string) *Updater {
	t.Helper()
	u, err := New(Options{StateDir: f.dir, Version: version, TrustedKeys: []string{f.pub},
		BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond, Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// runningVersion is the version in the slot current points to.
func (f *fixture) runningVersion() string {
	return versionOf(filepath.Join(NewLayout(f.dir).Current(), Binary))
}

// behaviour of a simulated version on trial.
type behaviour int

const (
	healthy   behaviour = iota // commits
	crashes                    // exits before committing, every time
	failTrial                  // records a trial failure and exits
)

// life simulates one start of the agent under the supervisor: PreStart
// from the committed side, then the version in current runs the job. It
// returns "restart", "done" (job finished: committed, rolled back or
// failed) or an error.
func life(ctx context.Context, f *fixture, jobID string, rel Release, trial behaviour) (string, error) {
	if _, err := PreStart(f.dir, time.Now()); err != nil {
		return "", fmt.Errorf("prestart: %w", err)
	}
	v := f.runningVersion()
	u, err := New(Options{StateDir: f.dir, Version: v, TrustedKeys: []string{f.pub},
		BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond, Retries: 50})
	if err != nil {
		return "", err
	}
	err = u.Install(ctx, jobID, rel)
	switch {
	case errors.Is(err, ErrRestart):
		return "restart", nil
	case errors.Is(err, ErrTrial):
		switch trial {
		case healthy:
			if err := u.Commit(); err != nil {
				return "", err
			}
			if err := u.Install(ctx, jobID, rel); err != nil {
				return "", fmt.Errorf("install after commit: %w", err)
			}
			return "done", nil
		case failTrial:
			if err := u.FailTrial("cannot connect: connection refused"); err != nil {
				return "", err
			}
		}
		return "restart", nil
	case err == nil, errors.Is(err, ErrRolledBack), errors.Is(err, ErrFailed):
		return "done", nil
	}
	return "", err
}

// check asserts the final state and that current and committed point to
// the slot holding wantVersion.
func (f *fixture) check(t testing.TB, want State, wantVersion string) {
	t.Helper()
	l := NewLayout(f.dir)
	st, err := l.load()
	if err != nil {
		t.Fatal(err)
	}
	if st.State != want {
		t.Errorf("state = %s (reason %q), want %s", st.State, st.Reason, want)
	}
	if linkSlot(l.Current()) != st.Active || linkSlot(l.Committed()) != st.Active {
		t.Errorf("current -> %q, committed -> %q, active %q", linkSlot(l.Current()), linkSlot(l.Committed()), st.Active)
	}
	if got := f.runningVersion(); got != wantVersion {
		t.Errorf("running version %q, want %q", got, wantVersion)
	}
	if err := CheckBinary(l.SlotBinary(st.Active)); err != nil {
		t.Errorf("active slot: %v", err)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
