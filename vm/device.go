package vm

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/iotagent/iotagent/cloud"
	"github.com/iotagent/iotagent/ota/otatest"
)

// Pin numbers of the chocolate box on the virtual header.
const (
	MotionGPIO  = 4  // the PIR
	ContactGPIO = 17 // the lid switch (closed: pulled low)
)

// ChocolateBox is the agent's config for the virtual chocolate box: the
// PIR and the lid switch on the kernel's GPIO lines, an LED output, the key
// in the TPM, fleet provisioning with iotsim's claim (the files beside it
// on the boot partition, see BootFiles), jobs, and OTA trusting
// trustedKeys (none: OTA off).
func ChocolateBox(ep cloud.Endpoint, mqttPort int, trustedKeys []string) []byte {
	cfg := map[string]any{
		"log":      map[string]any{"level": "info", "format": "text"},
		"mqtt":     map[string]any{"endpoint": "127.0.0.1", "port": mqttPort, "root_ca": "root-ca.pem", "keepalive_s": 30},
		"identity": map[string]any{"key_store": "tpm"},
		"provisioning": map[string]any{
			"claim_cert": "claim.crt", "claim_key": "claim.key", "template": ep.ProvisioningTemplate,
		},
		"telemetry": map[string]any{"interval_s": 60},
		"parts": map[string]any{
			"motion": map[string]any{"type": "input", "pin": fmt.Sprintf("GPIO%d", MotionGPIO), "pull": "down", "debounce_ms": 20,
				"role": "alarm", "event": "motion", "message": "motion detected"},
			"contact": map[string]any{"type": "input", "pin": fmt.Sprintf("GPIO%d", ContactGPIO), "pull": "up", "active_low": true, "debounce_ms": 20,
				"role": "alarm", "event": "lid_open", "message": "lid opened"},
			"led": map[string]any{"type": "output", "pin": "GPIO27"},
		},
		"jobs": map[string]any{"enabled": true},
	}
	if len(trustedKeys) > 0 {
		cfg["ota"] = map[string]any{"enabled": true, "trusted_keys": trustedKeys, "max_starts": 2, "trial_timeout_s": 120}
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}

// BootFiles is the boot partition of a device about to be set up as a
// user would: iotagent/ holds config.json with iotsim's root CA and claim
// (the first-boot adoption takes them), vmtest/ the .deb to install.
func BootFiles(ep cloud.Endpoint, config []byte, deb string) (map[string][]byte, error) {
	files := map[string][]byte{"iotagent/config.json": config}
	for name, p := range map[string]string{"iotagent/root-ca.pem": ep.RootCA, "iotagent/claim.crt": ep.ClaimCert,
		"iotagent/claim.key": ep.ClaimKey, "vmtest/" + filepath.Base(deb): deb} {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

// BuildDeb builds iotagent for amd64 stamped version and packages it with
// the project's scripts/package.sh, as a release is; it returns the
// .deb's path in dir.
func BuildDeb(b *otatest.Builder, moduleRoot, dir, version string) (string, error) {
	bin, err := b.Agent(version, "amd64")
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "iotagent-linux-amd64"), data, 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command("scripts/package.sh")
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "DIST="+dir, "PKG_ARCHES=amd64", "PKG_VERSION="+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("scripts/package.sh: %v\n%s", err, out)
	}
	return filepath.Join(dir, "iotagent_"+version+"_amd64.deb"), nil
}

// InstallScript installs the .deb from the boot partition with apt, as a
// user does (apt install ./iotagent_*.deb).
func InstallScript(deb string) string {
	deb = filepath.Base(deb)
	return "cd /root && cp /boot/firmware/vmtest/" + deb + " . && apt install -y ./" + deb + " 2>&1"
}

// Port is the port of an address or URL ("127.0.0.1:8883",
// "http://127.0.0.1:8080"), as in iotsim's endpoint.json.
func Port(addr string) (int, error) {
	_, p, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}
