package firstboot

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bootFiles drops a config, a root CA and a claim key and certificate on a
// pretend FAT partition (everything mode 0755, as FAT shows it).
func bootFiles(t *testing.T, config string) (bootDir, stateDir string) {
	t.Helper()
	bootDir = filepath.Join(t.TempDir(), "iotagent")
	stateDir = filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(bootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	files := map[string][]byte{
		"config.json": []byte(config),
		"root-ca.pem": []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
		"claim.crt":   []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
		"claim.key":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(bootDir, n), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bootDir, stateDir
}

const goodConfig = `{"state_dir":"/var/lib/iotagent","mqtt":{"endpoint":"abc-ats.iot.eu-west-1.amazonaws.com","root_ca":"root-ca.pem"},
 "provisioning":{"claim_cert":"claim.crt","claim_key":"claim.key","template":"fleet"}}`

func TestAdopt(t *testing.T) {
	bootDir, stateDir := bootFiles(t, goodConfig)
	path, err := Adopt(bootDir, stateDir, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if path != ConfigPath(stateDir) || path == "" {
		t.Fatalf("Adopt = %q, ConfigPath = %q", path, ConfigPath(stateDir))
	}
	for _, n := range []string{"config.json", "root-ca.pem", "claim.crt", "claim.key"} {
		fi, err := os.Stat(filepath.Join(stateDir, Dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", n, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(filepath.Join(stateDir, Dir)); fi.Mode().Perm() != 0o700 {
		t.Errorf("adopted dir mode %v, want 0700", fi.Mode().Perm())
	}
	if _, err := os.Stat(bootDir); !os.IsNotExist(err) {
		t.Errorf("boot dir still there after adoption: %v", err)
	}
	if _, ok := LastProblem(stateDir); ok {
		t.Error("a problem is recorded after a good adoption")
	}
	// Nothing left: a second start adopts nothing and keeps the adopted set.
	if p, err := Adopt(bootDir, stateDir, -1, -1); err != nil || p != "" || ConfigPath(stateDir) == "" {
		t.Errorf("second Adopt = %q, %v", p, err)
	}
}

func TestAdoptRefusesBadFilesAndKeepsThem(t *testing.T) {
	tests := []struct {
		name, config, want string
		mangle             func(bootDir string)
	}{
		{"malformed config", `{"state_dir":`, "config.json", nil},
		{"unknown key", strings.Replace(goodConfig, `"mqtt"`, `"mqt"`, 1), `unknown field "mqt"`, nil},
		{"truncated claim key", goodConfig, "claim key", func(d string) {
			os.WriteFile(filepath.Join(d, "claim.key"), []byte("-----BEGIN PRIVATE KEY-----\nMII"), 0o755)
		}},
		{"missing root CA", goodConfig, "mqtt.root_ca", func(d string) { os.Remove(filepath.Join(d, "root-ca.pem")) }},
		{"no config", goodConfig, "no usable config.json", func(d string) { os.Remove(filepath.Join(d, "config.json")) }},
		{"a directory", goodConfig, "not a regular file", func(d string) { os.Mkdir(filepath.Join(d, "sub"), 0o755) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bootDir, stateDir := bootFiles(t, tt.config)
			if tt.mangle != nil {
				tt.mangle(bootDir)
			}
			before, _ := os.ReadDir(bootDir)
			_, err := Adopt(bootDir, stateDir, -1, -1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Adopt: %v, want an error about %q", err, tt.want)
			}
			after, _ := os.ReadDir(bootDir)
			if len(after) != len(before) {
				t.Errorf("boot files changed after a failure: %d -> %d", len(before), len(after))
			}
			if ConfigPath(stateDir) != "" {
				t.Error("a refused config was adopted")
			}
			p, ok := LastProblem(stateDir)
			if !ok || !strings.Contains(p.Error, tt.want) || p.BootDir != bootDir {
				t.Errorf("recorded problem = %+v, %v", p, ok)
			}
			if left, _ := filepath.Glob(filepath.Join(stateDir, ".firstboot-*")); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

func TestNothingToAdopt(t *testing.T) {
	stateDir := t.TempDir()
	if p, err := Adopt(filepath.Join(t.TempDir(), "missing"), stateDir, -1, -1); p != "" || err != nil {
		t.Fatalf("Adopt of a missing dir = %q, %v", p, err)
	}
}
