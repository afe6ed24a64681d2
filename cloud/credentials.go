package cloud

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/iotagent/iotagent/cloud/api"
	"github.com/iotagent/iotagent/internal/atomicfile"
)

// CredentialsFile is the name, in the data dir, of the access key pair
// that signs REST and S3 requests (mode 0600).
const CredentialsFile = "aws-credentials.json"

type credentialsFile struct {
	AccessKeyID     string `json:"aws_access_key_id"`
	SecretAccessKey string `json:"aws_secret_access_key"`
}

// loadOrCreateCredentials reads DIR/aws-credentials.json, creating it with
// a new key pair on first start.
func loadOrCreateCredentials(dir string) (api.Credentials, error) {
	path := filepath.Join(dir, CredentialsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		c := credentialsFile{AccessKeyID: "AKIA" + randomString(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
			SecretAccessKey: randomString(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
		b, _ = json.MarshalIndent(c, "", "  ")
		if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
			return api.Credentials{}, fmt.Errorf("create %s: %w", path, err)
		}
		return api.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey}, nil
	}
	if err != nil {
		return api.Credentials{}, fmt.Errorf("read %s: %w", path, err)
	}
	var c credentialsFile
	if err := json.Unmarshal(b, &c); err != nil {
		return api.Credentials{}, fmt.Errorf("%s: %w (delete it to have a new key pair made)", path, err)
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" || strings.ContainsAny(c.AccessKeyID, "/ \t\n") {
		return api.Credentials{}, fmt.Errorf("%s: aws_access_key_id and aws_secret_access_key must be set, the key id without '/' or spaces (delete the file to have a new key pair made)", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return api.Credentials{}, fmt.Errorf("%s is readable by others and cannot be made 0600: %w", path, err)
		}
	}
	return api.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey}, nil
}

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// ErrNoAuthNotLoopback refuses Options.NoAuth on an address other hosts
// can reach.
var ErrNoAuthNotLoopback = errors.New("authentication can be turned off (--auth none) only on a loopback --http-addr")

// isLoopback reports whether a listen address (host:port) only accepts
// connections from this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NoAuthWarning is what iotsim logs when it serves without authentication.
const NoAuthWarning = "REST and S3 authentication is OFF (--auth none): any local process can create certificates and policies (e.g. iot:* on every topic), " +
	"read and write every shadow, publish on any topic, create jobs and replace OTA artifacts. MQTT still requires certificates"

// Client returns a REST API client that signs its requests with the
// endpoint's credentials.
func (e Endpoint) Client() *api.Client {
	c := &api.Client{BaseURL: e.HTTPEndpoint, Region: e.Region}
	if e.AWSAccessKeyID != "" {
		c.Credentials = &api.Credentials{AccessKeyID: e.AWSAccessKeyID, SecretAccessKey: e.AWSSecretAccessKey}
	}
	return c
}

// Env is the environment that points the aws CLI (and AWS SDKs) at this
// iotsim: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION and
// AWS_ENDPOINT_URL.
func (e Endpoint) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + e.AWSAccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + e.AWSSecretAccessKey,
		"AWS_DEFAULT_REGION=" + e.Region,
		"AWS_ENDPOINT_URL=" + e.HTTPEndpoint,
	}
}
