package ota

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/blake2b"
)

func TestInstallCommit(t *testing.T) {
	f := newFixture(t, 64<<10)
	ctx := context.Background()
	u1 := f.updater(t, "1.0.0")
	if err := u1.Install(ctx, "job-1", f.rel); !errors.Is(err, ErrRestart) {
		t.Fatalf("Install = %v, want ErrRestart", err)
	}
	d, err := PreStart(f.dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Decision{Slot: "b", Trial: true, Start: 1}, d); diff != "" {
		t.Errorf("PreStart (-want +got):\n%s", diff)
	}
	if f.runningVersion() != "2.0.0" {
		t.Fatalf("current runs %q", f.runningVersion())
	}
	u2 := f.updater(t, "2.0.0")
	if !u2.InTrial() || u1.InTrial() {
		t.Errorf("InTrial: v2 %v, v1 %v", u2.InTrial(), u1.InTrial())
	}
	if err := u1.Commit(); !errors.Is(err, ErrNoTrial) {
		t.Errorf("v1 Commit = %v, want ErrNoTrial", err)
	}
	if err := u2.Install(ctx, "job-1", f.rel); !errors.Is(err, ErrTrial) {
		t.Fatalf("v2 Install = %v, want ErrTrial", err)
	}
	if err := u2.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := u2.Install(ctx, "job-1", f.rel); err != nil {
		t.Fatalf("Install after commit = %v", err)
	}
	if _, err := PreStart(f.dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	f.check(t, Committed, "2.0.0")
	got, _ := os.ReadFile(NewLayout(f.dir).SlotBinary("b"))
	if sha256.Sum256(got) != sha256.Sum256(f.v2) {
		t.Error("slot b is not the artifact")
	}
	if _, err := os.Stat(NewLayout(f.dir).downloadPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("download left behind: %v", err)
	}
	// The same version again is nothing to do.
	if err := u2.Install(ctx, "job-2", f.rel); !errors.Is(err, ErrSameVersion) {
		t.Errorf("same version: %v", err)
	}
	// Manual rollback returns to 1.0.0, which stays installable no more.
	if err := u2.Rollback("operator"); err != nil {
		t.Fatal(err)
	}
	f.check(t, RolledBack, "1.0.0")
}

func TestWatchTrial(t *testing.T) {
	for _, tc := range []struct {
		name      string
		healthy   bool
		wantErr   error
		wantState State
		wantRun   string
	}{
		{"healthy commits", true, nil, Committed, "2.0.0"},
		{"deadline rolls back", false, ErrTrialFailed, RolledBack, "1.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 4096)
			if err := f.updater(t, "1.0.0").Install(context.Background(), "j", f.rel); !errors.Is(err, ErrRestart) {
				t.Fatal(err)
			}
			if _, err := PreStart(f.dir, time.Now()); err != nil {
				t.Fatal(err)
			}
			h, dl := make(chan struct{}), make(chan time.Time, 1)
			if tc.healthy {
				close(h)
			} else {
				dl <- time.Now()
			}
			err := f.updater(t, "2.0.0").WatchTrial(context.Background(), dl, h, func() string { return "cannot connect: refused" })
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("WatchTrial = %v, want %v", err, tc.wantErr)
			}
			d, err := PreStart(f.dir, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !tc.healthy && !strings.Contains(d.Reason, "cannot connect: refused") {
				t.Errorf("reason %q does not say why", d.Reason)
			}
			f.check(t, tc.wantState, tc.wantRun)
			// The old version reports the job failed with the reason.
			err = f.updater(t, f.runningVersion()).Install(context.Background(), "j", f.rel)
			if tc.healthy && err != nil || !tc.healthy && !errors.Is(err, ErrRolledBack) {
				t.Errorf("Install after = %v", err)
			}
			if !tc.healthy {
				// Never reinstalled automatically.
				if err := f.updater(t, "1.0.0").Install(context.Background(), "j2", f.rel); !errors.Is(err, ErrFailedBefore) {
					t.Errorf("reinstall: %v, want ErrFailedBefore", err)
				}
			}
		})
	}
}

// Every refusal leaves the slots untouched and v1 running.
func TestRefusals(t *testing.T) {
	_, otherSec, err := GenerateKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]elf.Machine{"amd64": elf.EM_AARCH64}[DeviceArch]
	if other == 0 {
		other = elf.EM_X86_64
	}
	_, sec := keyPair()
	for _, tc := range []struct {
		name    string
		mutate  func(f *fixture, r *Release)
		version string
		wantErr error
	}{
		{"corrupted download", func(f *fixture, r *Release) { f.srv.data = append([]byte(nil), f.v2...); f.srv.data[100] ^= 1 }, "1.0.0", ErrChecksum},
		{"size larger than announced", func(f *fixture, r *Release) { r.Size-- }, "1.0.0", ErrSizeMismatch},
		{"size smaller than announced", func(f *fixture, r *Release) { r.Size++ }, "1.0.0", ErrSizeMismatch},
		{"bad signature", func(f *fixture, r *Release) {
			b := []byte(r.Signature)
			lines := strings.Split(string(b), "\n")
			raw := []byte(lines[1])
			raw[20] ^= 2
			lines[1] = string(raw)
			r.Signature = strings.Join(lines, "\n")
		}, "1.0.0", ErrBadSignature},
		{"untrusted key", func(f *fixture, r *Release) { r.Signature = sign(t, otherSec, f.v2, "2.0.0") }, "1.0.0", ErrUntrustedKey},
		{"other CPU in ELF", func(f *fixture, r *Release) {
			f.srv.data = fakeBinary(other, "2.0.0", 4096)
			*r = f.release(t, f.srv.data, "2.0.0", sec)
		}, "1.0.0", ErrWrongArch},
		{"other CPU in document", func(f *fixture, r *Release) {
			r.Arch = map[bool]string{true: "arm64", false: "amd64"}[DeviceArch == "amd64"]
		}, "1.0.0", ErrSignedMismatch},
		{"other CPU signed", func(f *fixture, r *Release) {
			r.Arch = map[bool]string{true: "arm64", false: "amd64"}[DeviceArch == "amd64"]
			r.Signature = signFor(t, sec, f.v2, Meta{"2.0.0", r.Arch})
		}, "1.0.0", ErrWrongArch},
		{"downgrade", func(f *fixture, r *Release) {}, "3.0.0", ErrDowngrade},
		// The case: a document saying 0.0.1 for a signed 2.0.0.
		{"document version not the signed one", func(f *fixture, r *Release) { r.Version = "0.0.1"; r.AllowDowngrade = true }, "1.0.0", ErrSignedMismatch},
		{"document version newer than the signed one", func(f *fixture, r *Release) {
			r.Signature = sign(t, sec, f.v2, "0.9.0")
		}, "1.0.0", ErrSignedMismatch},
		{"downgrade by the signed version", func(f *fixture, r *Release) {
			r.Version, r.Signature = "0.9.0", sign(t, sec, f.v2, "0.9.0")
		}, "1.0.0", ErrDowngrade},
		{"trusted comment edited", func(f *fixture, r *Release) {
			r.Version = "9.9.9"
			r.Signature = strings.Replace(r.Signature, "version:2.0.0", "version:9.9.9", 1)
		}, "1.0.0", ErrBadSignature},
		{"signature names no version", func(f *fixture, r *Release) {
			s, err := loadSecretKey(sec, "")
			if err != nil {
				t.Fatal(err)
			}
			digest := blake2b.Sum512(f.v2)
			b, err := s.sign(digest[:], "timestamp:1700000000\tfile:iotagent\thashed") // what minisign -S writes
			if err != nil {
				t.Fatal(err)
			}
			r.Signature = string(b)
		}, "1.0.0", ErrUnsignedMeta},
		{"running a commit hash", func(f *fixture, r *Release) {}, "bb1c651", ErrUnorderedVersion},
		{"running a dev build", func(f *fixture, r *Release) {}, "dev", ErrUnorderedVersion},
		{"not found", func(f *fixture, r *Release) { f.srv.status = 404 }, "1.0.0", ErrDownload},
		{"server errors until retries run out", func(f *fixture, r *Release) { f.srv.status = 503 }, "1.0.0", ErrDownload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 4096)
			r := f.rel
			tc.mutate(f, &r)
			err := f.updater(t, tc.version).Install(context.Background(), "j", r)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Install = %v, want %v", err, tc.wantErr)
			}
			if _, err := os.Stat(NewLayout(f.dir).SlotBinary("b")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("slot b touched: %v", err)
			}
			st, _ := NewLayout(f.dir).load()
			if st.State.Terminal() == false {
				t.Errorf("state %s is not terminal", st.State)
			}
			if _, err := PreStart(f.dir, time.Now()); err != nil {
				t.Fatal(err)
			}
			f.check(t, st.State, "1.0.0")
		})
	}
}

func TestRangeResume(t *testing.T) {
	f := newFixture(t, 256<<10)
	f.srv.cutAt = 100 << 10
	var attempts []error
	u, err := New(Options{StateDir: f.dir, Version: "1.0.0", TrustedKeys: []string{f.pub},
		BackoffMin: time.Millisecond, Attempt: func(err error) { attempts = append(attempts, err) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Install(context.Background(), "j", f.rel); !errors.Is(err, ErrRestart) {
		t.Fatalf("Install = %v", err)
	}
	if diff := cmp.Diff([]string{"", "bytes=102400-"}, f.srv.rangesSeen()); diff != "" {
		t.Errorf("Range headers (-want +got):\n%s", diff)
	}
	if len(attempts) != 1 || !IsTransient(attempts[0]) {
		t.Errorf("retries: %v", attempts)
	}
}

// A restart in the middle of the download resumes it with Range too.
func TestRangeResumeAfterRestart(t *testing.T) {
	f := newFixture(t, 256<<10)
	f.srv.cutAt = 50 << 10
	ctx, cancel := context.WithCancel(context.Background())
	u, _ := New(Options{StateDir: f.dir, Version: "1.0.0", TrustedKeys: []string{f.pub},
		Sleep: func(context.Context, time.Duration) error { cancel(); return context.Canceled }})
	if err := u.Install(ctx, "j", f.rel); !errors.Is(err, context.Canceled) {
		t.Fatalf("Install = %v, want canceled", err)
	}
	if st, _ := u.Status(); st.State != Download {
		t.Fatalf("state %s after the drop", st.State)
	}
	if err := f.updater(t, "1.0.0").Install(context.Background(), "j", f.rel); !errors.Is(err, ErrRestart) {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"", "bytes=51200-"}, f.srv.rangesSeen()); diff != "" {
		t.Errorf("Range headers (-want +got):\n%s", diff)
	}
}

var errCrash = errors.New("crash")

// OTA: a table of "interrupted in state X" cases, each restarting (the
// supervisor runs PreStart, then the agent resumes the job) and asserting
// the final state.
func TestInterruptedInState(t *testing.T) {
	for _, tc := range []struct {
		crashIn     State
		nth         int // crash at the nth time the state is entered
		trial       behaviour
		wantState   State
		wantVersion string
	}{
		{Download, 1, healthy, Committed, "2.0.0"},
		{Verify, 1, healthy, Committed, "2.0.0"},
		{Stage, 1, healthy, Committed, "2.0.0"},
		{Apply, 1, healthy, Committed, "2.0.0"},
		{Confirm, 1, healthy, Committed, "2.0.0"},
		{Committed, 1, healthy, Committed, "2.0.0"},
		{Confirm, 1, crashes, RolledBack, "1.0.0"},
		{Confirm, 1, failTrial, RolledBack, "1.0.0"},
		{RolledBack, 1, crashes, RolledBack, "1.0.0"},
	} {
		t.Run(string(tc.crashIn)+"/"+map[behaviour]string{healthy: "healthy", crashes: "crashes", failTrial: "fails"}[tc.trial], func(t *testing.T) {
			f := newFixture(t, 8192)
			n := 0
			testHookState = func(s State) error {
				if s == tc.crashIn {
					n++
					if n == tc.nth {
						return errCrash
					}
				}
				return nil
			}
			t.Cleanup(func() { testHookState = nil })
			crashed := false
			for range 20 {
				r, err := life(context.Background(), f, "job-1", f.rel, tc.trial)
				if errors.Is(err, errCrash) {
					crashed = true
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if r == "done" {
					break
				}
			}
			if !crashed {
				t.Fatalf("never crashed in %s", tc.crashIn)
			}
			if _, err := PreStart(f.dir, time.Now()); err != nil {
				t.Fatal(err)
			}
			f.check(t, tc.wantState, tc.wantVersion)
		})
	}
}

// A binary that cannot start (here: one for another CPU put in the slot
// behind the verifier's back) is rolled back by the first PreStart.
func TestPreStartRollsBackUnstartable(t *testing.T) {
	f := newFixture(t, 4096)
	if err := f.updater(t, "1.0.0").Install(context.Background(), "j", f.rel); !errors.Is(err, ErrRestart) {
		t.Fatal(err)
	}
	if err := os.WriteFile(NewLayout(f.dir).SlotBinary("b"), fakeBinary(elf.EM_MIPS, "2.0.0", 10), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := PreStart(f.dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !d.RolledBack || !strings.Contains(d.Reason, "cannot start") {
		t.Errorf("decision %+v", d)
	}
	f.check(t, RolledBack, "1.0.0")
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
		ok   bool
	}{
		{"1.2.3", "1.2.3", 0, true},
		{"v1.2.10", "1.2.9", 1, true},
		{"1.2", "1.2.0", 0, true},
		{"2.0.0-rc1", "2.0.0", -1, true},
		{"2.0.0-rc2", "2.0.0-rc1", 1, true},
		{"dev", "1.0.0", 0, false},
	} {
		got, ok := compareVersions(tc.a, tc.b)
		if got != tc.want || ok != tc.ok {
			t.Errorf("compare(%q, %q) = %d, %v; want %d, %v", tc.a, tc.b, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseDocument(t *testing.T) {
	pub, sec := keyPair()
	_ = pub
	data := fakeBinary(deviceMachine(), "2.0.0", 10)
	sum := sha256.Sum256(data)
	sig := signFor(t, sec, data, Meta{"2.0.0", "arm64"})
	good := `{"operation":"ota","version":"2.0.0","file":{"url":"https://files.example.com/a","size":10,"sha256":"` + hex.EncodeToString(sum[:]) + `","signature":` + jsonString(sig) + `,"arch":"arm64"}}`
	if r, err := ParseDocument([]byte(good), []string{"files.example.com"}); err != nil || r.Arch != "arm64" || r.Size != 10 {
		t.Fatalf("good: %+v, %v", r, err)
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"not json", `{`, "unexpected EOF"},
		{"no file", `{"operation":"ota","version":"2.0.0"}`, "file: missing"},
		{"other host", strings.Replace(good, "files.example.com", "evil.example.net", 1), `host "evil.example.net" is not allowed`},
		{"unsigned", strings.Replace(good, `"signature":`+jsonString(sig), `"signature":""`, 1), "unsigned artifacts are refused"},
		{"bad version", strings.Replace(good, `"version":"2.0.0"`, `"version":"latest"`, 1), "version:"},
		{"file scheme", strings.Replace(good, "https://files.example.com/a", "file:///etc/passwd", 1), "scheme"},
		{"huge", `{"operation":"ota","pad":"` + strings.Repeat("x", MaxDocument) + `"}`, "more than"},
		{"bad arch", strings.Replace(good, `"arch":"arm64"`, `"arch":"z80"`, 1), "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDocument([]byte(tc.doc), []string{"files.example.com"})
			if !errors.Is(err, ErrBadDocument) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrBadDocument containing %q", err, tc.want)
			}
		})
	}
}

func jsonString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

func FuzzParseDocument(f *testing.F) {
	f.Add([]byte(`{"operation":"ota","version":"2.0.0","file":{"url":"https://h/a","size":10,"sha256":"00","signature":"x","arch":"arm64"}}`))
	f.Add([]byte(`{"operation":"ota","file":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseDocument(b, []string{"h"})
		if err == nil && (r.Size <= 0 || r.Signature == "" || goarch(r.Arch) == "") {
			t.Fatalf("accepted %+v", r)
		}
	})
}

// A running version with no order (a dev build) takes a release only from
// a job that allows downgrades, and says so; with it, the update installs.
func TestUnorderedRunningVersionNeedsAllowDowngrade(t *testing.T) {
	f := newFixture(t, 4096)
	r := f.rel
	err := f.updater(t, "bb1c651").Install(context.Background(), "j", r)
	if !errors.Is(err, ErrUnorderedVersion) || !strings.Contains(err.Error(), `this device runs "bb1c651", which is not a release version`) {
		t.Fatalf("Install over bb1c651: %v", err)
	}
	r.AllowDowngrade = true
	if err := f.updater(t, "bb1c651").Install(context.Background(), "j2", r); !errors.Is(err, ErrRestart) {
		t.Fatalf("Install over bb1c651 with allow_downgrade: %v, want ErrRestart", err)
	}
}

func FuzzParseTrustedComment(f *testing.F) {
	f.Add("timestamp:1700000000\tfile:iotagent\thashed\tversion:1.4.0\tarch:arm64")
	f.Add("version:1.4.0 arch:arm64 version:1.5.0")
	f.Add("timestamp:1\tfile:x\thashed")
	f.Fuzz(func(t *testing.T, c string) {
		m, err := ParseTrustedComment(c)
		if err != nil {
			if !errors.Is(err, ErrUnsignedMeta) {
				t.Fatalf("error %v is not ErrUnsignedMeta", err)
			}
			return
		}
		if m.Check() != nil || !strings.Contains(c, "version:"+m.Version) || !strings.Contains(c, "arch:"+m.Arch) {
			t.Fatalf("ParseTrustedComment(%q) = %+v", c, m)
		}
	})
}
