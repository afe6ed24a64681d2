package s3

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const awsCLIPath = "/usr/bin/aws"

// awsCLI runs the real aws CLI with test credentials; it skips when the
// CLI is absent, except in CI.
func awsCLI(t *testing.T, args ...string) (string, string, error) {
	return awsCLIWith(t, testCreds.SecretAccessKey, args...)
}

// awsCLIWith runs the aws CLI with secret as the secret key.
func awsCLIWith(t *testing.T, secret string, args ...string) (string, string, error) {
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
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "AWS_ACCESS_KEY_ID=" + testCreds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1", "AWS_EC2_METADATA_DISABLED=true"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func TestAWSCLICopy(t *testing.T) {
	e := newTestEnv(t)
	e.clock.Set(time.Now()) // the CLI signs with the real time
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

// TestAWSCLIWrongSecret: the real CLI with a wrong secret key is refused
// with SignatureDoesNotMatch, and a presigned URL it makes with the right
// one downloads.
func TestAWSCLIWrongSecret(t *testing.T) {
	e := newTestEnv(t)
	e.clock.Set(time.Now())
	if _, err := e.st.Put("ota-files", "a.bin", "", strings.NewReader("artifact")); err != nil {
		t.Fatal(err)
	}
	ep := e.srv.URL + "/s3"
	_, errs, err := awsCLIWith(t, "wrong", "s3", "cp", "s3://ota-files/a.bin", filepath.Join(t.TempDir(), "a.bin"), "--endpoint-url", ep)
	if err == nil || !strings.Contains(errs, "403") && !strings.Contains(errs, "SignatureDoesNotMatch") && !strings.Contains(errs, "Forbidden") {
		t.Errorf("download with a wrong secret: %v\n%s", err, errs)
	}
	_, errs, err = awsCLIWith(t, "wrong", "s3", "cp", func() string {
		p := filepath.Join(t.TempDir(), "evil.bin")
		_ = os.WriteFile(p, []byte("evil"), 0o600)
		return p
	}(), "s3://ota-files/a.bin", "--endpoint-url", ep)
	if err == nil || !strings.Contains(errs, "SignatureDoesNotMatch") {
		t.Errorf("upload with a wrong secret: %v\n%s", err, errs)
	}
	if got, _ := e.st.Get("ota-files", "a.bin", 100); string(got) != "artifact" {
		t.Errorf("object overwritten: %q", got)
	}
	out, errs, err := awsCLI(t, "s3", "presign", "s3://ota-files/a.bin", "--expires-in", "60", "--endpoint-url", ep)
	if err != nil {
		t.Fatalf("presign: %v\n%s", err, errs)
	}
	resp, b := do(t, "GET", strings.TrimSpace(out), nil, nil)
	if resp.StatusCode != 200 || string(b) != "artifact" {
		t.Errorf("GET of the CLI's presigned URL: %d %s", resp.StatusCode, b)
	}
}
