package s3

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const awsCLIPath = "/usr/bin/aws"

// awsCLI runs the real aws CLI with test credentials; it skips when the
// CLI is absent, except in CI.
func awsCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("aws CLI tests are slow; skipped with -short")
	}
	if _, err := os.Stat(awsCLIPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", awsCLIPath, err)
		}
		t.Skipf("%s not installed (%v); skipping", awsCLIPath, err)
	}
	home := t.TempDir()
	cmd := exec.Command(awsCLIPath, args...)
	cmd.Dir = home
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1", "AWS_EC2_METADATA_DISABLED=true"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func TestAWSCLICopy(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	small := filepath.Join(dir, "small.bin")
	big := filepath.Join(dir, "big.bin") // past the CLI's 8 MiB multipart threshold
	bigData := make([]byte, 9<<20+123)
	_, _ = rand.Read(bigData)
	if err := os.WriteFile(small, []byte("small artifact\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, bigData, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		endpoint string
		files    []string
	}{
		{e.srv.URL + "/s3", []string{small, big}},
		{e.srv.URL, []string{small}}, // signed for s3: routed by the credential scope
	} {
		ep := tc.endpoint
		t.Run(ep, func(t *testing.T) {
			for _, f := range tc.files {
				key := "releases/" + filepath.Base(f)
				if _, errs, err := awsCLI(t, "s3", "cp", f, "s3://ota-files/"+key, "--endpoint-url", ep); err != nil {
					t.Fatalf("upload %s: %v\n%s", f, err, errs)
				}
				want, _ := os.ReadFile(f)
				got, err := e.st.Get("ota-files", key, 1<<30)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("stored %s: %d bytes, want %d (%v)", key, len(got), len(want), err)
				}
				back := filepath.Join(dir, "back-"+filepath.Base(f))
				if _, errs, err := awsCLI(t, "s3", "cp", "s3://ota-files/"+key, back, "--endpoint-url", ep); err != nil {
					t.Fatalf("download %s: %v\n%s", key, err, errs)
				}
				if got, _ := os.ReadFile(back); !bytes.Equal(got, want) {
					t.Fatalf("downloaded %s differs", key)
				}
			}
			out, errs, err := awsCLI(t, "s3", "ls", "s3://ota-files/releases/", "--endpoint-url", ep)
			if err != nil || !strings.Contains(out, "small.bin") {
				t.Fatalf("ls: %v\n%s\n%s", err, out, errs)
			}
		})
	}
}
