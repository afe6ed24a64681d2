package rotate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotagent/iotagent/internal/statefile"
)

// TestDamagedRotationProgressIsKeptAndRecorded: rotation.json that atomic
// writes cannot produce is moved aside and recorded (it was deleted
// without a word), and the rotation starts over.
func TestDamagedRotationProgressIsKeptAndRecorded(t *testing.T) {
	dir := t.TempDir()
	idDir := filepath.Join(dir, dirName)
	os.MkdirAll(idDir, 0o700)
	path := filepath.Join(idDir, progressFile)
	damaged := `{"keyRef":"file:/x","oldCert`
	if err := os.WriteFile(path, []byte(damaged), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := (&rotation{dir: idDir, o: Options{StateDir: dir}}).readProgress()
	if p != nil || err != nil {
		t.Fatalf("readProgress = %+v, %v; want a fresh start", p, err)
	}
	evs, err := statefile.Events(dir)
	if err != nil || len(evs) != 1 || evs[0].File != path || !strings.Contains(evs[0].Action, "starts over") {
		t.Fatalf("journal %+v, %v", evs, err)
	}
	if b, err := os.ReadFile(evs[0].MovedTo); err != nil || string(b) != damaged {
		t.Errorf("moved copy %q, %v", b, err)
	}
}
