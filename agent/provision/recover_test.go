package provision

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/internal/statefile"
)

// TestDamagedProgressIsKeptAndRecorded: a progress.json that atomic
// writes cannot produce is no longer deleted without a word: it is moved
// aside, recorded, and provisioning starts over.
func TestDamagedProgressIsKeptAndRecorded(t *testing.T) {
	for _, damaged := range []string{"", `{"certificateId":"x","certificatePem":"`, `{"api":"create"}`} {
		dir := t.TempDir()
		idDir := filepath.Join(dir, dirName)
		os.MkdirAll(idDir, 0o700)
		path := filepath.Join(idDir, progressFile)
		if err := os.WriteFile(path, []byte(damaged), 0o600); err != nil {
			t.Fatal(err)
		}
		prog, err := (&client{dir: idDir, o: Options{StateDir: dir}}).readProgress()
		if prog != nil || err != nil {
			t.Fatalf("%q: readProgress = %+v, %v; want a fresh start", damaged, prog, err)
		}
		evs, err := statefile.Events(dir)
		if err != nil || len(evs) != 1 || evs[0].File != path || !strings.Contains(evs[0].Action, "starts over") {
			t.Fatalf("%q: journal %+v, %v", damaged, evs, err)
		}
		if b, err := os.ReadFile(evs[0].MovedTo); err != nil || string(b) != damaged {
			t.Errorf("%q: moved copy %q, %v", damaged, b, err)
		}
	}
}

// TestLoadDamagedIdentityNamesTheFile: the old Load said only "load
// identity: unexpected end of JSON input".
func TestLoadDamagedIdentityNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, dirName, identityFile)
	os.MkdirAll(filepath.Dir(path), 0o700)
	os.WriteFile(path, []byte(`{"thingName":"cc-0002","certif`), 0o600)
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "moved aside to "+path+statefile.CorruptInfix) {
		t.Fatalf("Load = %v; want the path and where the damaged copy went", err)
	}
	evs, _ := statefile.Events(dir)
	if len(evs) != 1 || !strings.Contains(evs[0].Action, "no certificate") {
		t.Fatalf("journal %+v; want one event saying there is no certificate to rebuild from", evs)
	}
}

// FuzzLegibleString: whatever a damaged identity.json holds, the thing
// name read from it is a valid AWS IoT name or nothing.
func FuzzLegibleString(f *testing.F) {
	f.Add([]byte(`{"thingName": "box-7", "certif`))
	f.Add([]byte(`{"thingName":"a/b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := legibleString(b, "thingName")
		if len(s) > 128 || strings.ContainsFunc(s, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':' || r == '_' || r == '-')
		}) {
			t.Fatalf("legibleString = %q", s)
		}
		if s != "" && !strings.Contains(string(b), `"`+s+`"`) {
			t.Fatalf("%q is not in the input", s)
		}
	})
}
