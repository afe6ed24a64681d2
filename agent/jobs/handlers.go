package jobs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// BootID returns the kernel's boot ID, which changes on every boot.
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// SystemdReboot reboots the device through systemd.
func SystemdReboot(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "systemctl", "reboot").CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl reboot: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Reboot is the "reboot" handler: it records the boot ID, reports
// "rebooting" and calls reboot (SystemdReboot in production). When the
// job resumes after the restart it is SUCCEEDED if the boot ID changed,
// FAILED if the device did not reboot. bootID is BootID in production.
func Reboot(reboot func(context.Context) error, bootID func() (string, error)) Handler {
	return HandlerFunc(func(ctx context.Context, job Job, p *Progress) (map[string]string, error) {
		id, err := bootID()
		if err != nil {
			return nil, err
		}
		if prev, ok := strings.CutPrefix(job.Marker, "rebooting:"); job.Resumed && ok {
			if prev == id {
				return nil, fmt.Errorf("the agent restarted but the device did not reboot")
			}
			return map[string]string{"step": "rebooted"}, nil
		}
		if err := p.Mark("rebooting:" + id); err != nil {
			return nil, err
		}
		if err := p.Update(ctx, map[string]string{"step": "rebooting"}); err != nil {
			return nil, err
		}
		if err := reboot(ctx); err != nil {
			return nil, fmt.Errorf("reboot: %w", err)
		}
		return nil, ErrKeepInProgress
	})
}

// RestartAgent is the "restart-agent" handler: it reports "restarting"
// and calls restart, which makes the agent exit so that its supervisor
// starts it again; the job is SUCCEEDED when it resumes.
func RestartAgent(restart func(context.Context) error) Handler {
	return HandlerFunc(func(ctx context.Context, job Job, p *Progress) (map[string]string, error) {
		if job.Resumed && job.Marker == "restarting" {
			return map[string]string{"step": "restarted"}, nil
		}
		if err := p.Mark("restarting"); err != nil {
			return nil, err
		}
		if err := p.Update(ctx, map[string]string{"step": "restarting"}); err != nil {
			return nil, err
		}
		if err := restart(ctx); err != nil {
			return nil, fmt.Errorf("restart: %w", err)
		}
		return nil, ErrKeepInProgress
	})
}
