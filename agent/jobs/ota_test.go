package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotagent/iotagent/ota"
)

// fakeELF is an ELF header for this CPU plus a payload; it is never run.
func fakeELF(payload string) []byte {
	m := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM, "386": elf.EM_386, "riscv64": elf.EM_RISCV}[ota.DeviceArch]
	hdr := make([]byte, 64)
	copy(hdr, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	binary.LittleEndian.PutUint16(hdr[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(hdr[18:], uint16(m))
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint16(hdr[52:], 64)
	return append(hdr, payload...)
}

// TestOTAJob runs an ota job through the runner across the restart into
// the new version: committed (SUCCEEDED, version and slot in
// statusDetails) or, when the new version never gets healthy, rolled back
// by PreStart and reported FAILED by the old version.
func TestOTAJob(t *testing.T) {
	for _, tc := range []struct {
		name       string
		healthy    bool
		wantStatus string
		wantDetail map[string]string
	}{
		{"commits", true, StatusSucceeded, map[string]string{"version": "2.0.0", "slot": "b"}},
		{"rolls back", false, StatusFailed, map[string]string{"version": "2.0.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			v1 := filepath.Join(t.TempDir(), "v1")
			if err := os.WriteFile(v1, fakeELF("v1"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := ota.Init(state, v1, "1.0.0"); err != nil {
				t.Fatal(err)
			}
			pub, sec, err := ota.GenerateKey(nil, "")
			if err != nil {
				t.Fatal(err)
			}
			art := fakeELF(strings.Repeat("v2", 5000))
			sig, err := ota.Sign(sec, "", bytes.NewReader(art), "iotagent", time.Now(), ota.Meta{Version: "2.0.0", Arch: ota.DeviceArch})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.ServeContent(w, r, "a", time.Time{}, bytes.NewReader(art))
			}))
			t.Cleanup(srv.Close)
			sum := sha256.Sum256(art)
			doc, _ := json.Marshal(map[string]any{"operation": "ota", "version": "2.0.0", "file": map[string]any{
				"url": srv.URL + "/iotagent", "size": len(art), "sha256": hex.EncodeToString(sum[:]),
				"signature": string(sig), "arch": ota.DeviceArch}})

			svc := newFakeService(t)
			life := func(version string, healthy func(context.Context) error) *harness {
				u, err := ota.New(ota.Options{StateDir: state, Version: version, TrustedKeys: []string{string(pub)}})
				if err != nil {
					t.Fatal(err)
				}
				var h *harness
				handlers := map[string]Handler{"ota": OTA(OTAOptions{Updater: u,
					Restart: func(context.Context) error { h.cancel(); return nil },
					Healthy: healthy})}
				h = startRunner(t, svc, state, handlers, nil)
				return h
			}
			// v1 downloads, verifies, stages, switches and restarts.
			h := life("1.0.0", nil)
			svc.Queue("ota-1", string(doc))
			<-h.done
			h.done <- nil
			if e := svc.Exec("ota-1"); e.status != StatusInProgress || e.details["step"] != "restarting" {
				t.Fatalf("before restart: %s %v", e.status, e.details)
			}
			if d, err := ota.PreStart(state, time.Now()); err != nil || !d.Trial {
				t.Fatalf("PreStart = %+v, %v", d, err)
			}
			if tc.healthy {
				life("2.0.0", func(context.Context) error { return nil })
			} else {
				// v2 never gets healthy: each start ends (crash, hang
				// killed, exit) until PreStart rolls back; then v1 runs.
				for {
					h := life("2.0.0", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
					h.stop(t)
					d, err := ota.PreStart(state, time.Now())
					if err != nil {
						t.Fatal(err)
					}
					if d.RolledBack {
						break
					}
				}
				life("1.0.0", nil)
			}
			e := svc.waitStatus(t, "ota-1")
			if e.status != tc.wantStatus {
				t.Fatalf("status %s %v", e.status, e.details)
			}
			for k, v := range tc.wantDetail {
				if e.details[k] != v {
					t.Errorf("statusDetails[%s] = %q, want %q (all: %v)", k, e.details[k], v, e.details)
				}
			}
			if !tc.healthy && !strings.Contains(e.details["reason"], "did not commit in 3 starts") {
				t.Errorf("reason %q", e.details["reason"])
			}
		})
	}
}
