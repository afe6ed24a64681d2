package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
)

// marker is the line every hook file iotimage writes carries: a file
// without it was written by someone else and is not replaced silently.
const marker = "Written by iotimage prepare (iotagent)"

// Where the files go on the boot partition, and where it is mounted on
// the device (Raspberry Pi OS, Bookworm and Trixie).
const (
	deviceBoot    = "/boot/firmware"
	agentDir      = "iotagent"       // adopted by iotagent firstboot
	setupDir      = "iotagent-setup" // the .deb, setup.sh, setup.log
	setupScript   = setupDir + "/setup.sh"
	userData      = "user-data"
	metaData      = "meta-data"
	networkConfig = "network-config"
	firstrunFile  = "firstrun.sh"
	cmdlineFile   = "cmdline.txt"
)

// cmdlineEntry runs firstrun.sh once, then reboots (as Raspberry Pi
// Imager does on Bookworm).
const cmdlineEntry = " systemd.run=" + deviceBoot + "/" + firstrunFile + " systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"

//go:embed setup.sh
var setupSh []byte

// settings are the optional device settings both hooks apply.
type settings struct {
	hostname     string
	user         string
	passwordHash string // crypt(3); "" locks the password
	sshKeys      []string
	wifiSSID     string
	wifiPSK      string
	wifiCountry  string
}

// yq quotes s as a YAML double-quoted scalar (JSON's string syntax is a
// subset of it).
func yq(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// shq quotes s for sh and bash.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// userDataFile is cloud-init's user-data: the settings, and the hook in
// runcmd (cloud-final, once per instance).
func userDataFile(s settings) []byte {
	var b strings.Builder
	b.WriteString("#cloud-config\n# " + marker + "; running it again rewrites this file.\n")
	if s.hostname != "" {
		fmt.Fprintf(&b, "hostname: %s\nmanage_etc_hosts: true\n", yq(s.hostname))
	}
	if s.user != "" {
		fmt.Fprintf(&b, "users:\n  - name: %s\n", yq(s.user))
		b.WriteString("    groups: users,adm,dialout,audio,netdev,video,plugdev,input,gpio,spi,i2c,sudo\n")
		b.WriteString("    shell: /bin/bash\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n")
		if s.passwordHash != "" {
			fmt.Fprintf(&b, "    lock_passwd: false\n    passwd: %s\n", yq(s.passwordHash))
		} else {
			b.WriteString("    lock_passwd: true\n")
		}
		if len(s.sshKeys) > 0 {
			b.WriteString("    ssh_authorized_keys:\n")
			for _, k := range s.sshKeys {
				fmt.Fprintf(&b, "      - %s\n", yq(k))
			}
		}
	}
	if len(s.sshKeys) > 0 {
		b.WriteString("ssh_pwauth: false\n")
		if s.user == "" {
			b.WriteString("ssh_authorized_keys:\n")
			for _, k := range s.sshKeys {
				fmt.Fprintf(&b, "  - %s\n", yq(k))
			}
		}
	}
	b.WriteString("runcmd:\n")
	if len(s.sshKeys) > 0 {
		// Raspberry Pi OS has SSH off until asked for.
		b.WriteString("  - [systemctl, enable, --now, ssh]\n")
	}
	fmt.Fprintf(&b, "  - [sh, %s/%s]\n", deviceBoot, setupScript)
	return []byte(b.String())
}

// networkConfigFile is cloud-init's network-config (netplan v2) with the
// Wi-Fi network, and Ethernet by DHCP as the image's own has it.
func networkConfigFile(s settings) []byte {
	var b strings.Builder
	b.WriteString("# " + marker + "; running it again rewrites this file.\n")
	b.WriteString("network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n      optional: true\n")
	b.WriteString("  wifis:\n    renderer: NetworkManager\n    wlan0:\n      dhcp4: true\n      optional: true\n")
	if s.wifiCountry != "" {
		fmt.Fprintf(&b, "      regulatory-domain: %s\n", yq(s.wifiCountry))
	}
	fmt.Fprintf(&b, "      access-points:\n        %s:\n          password: %s\n", yq(s.wifiSSID), yq(s.wifiPSK))
	return []byte(b.String())
}

// metaDataFile is cloud-init's meta-data. The instance id is derived from
// everything else prepare writes: cloud-init runs user-data once per
// instance id, so changed content runs again and the same content does not.
func metaDataFile(instanceID, hostname string) []byte {
	var b strings.Builder
	b.WriteString("# " + marker + "; running it again rewrites this file.\n")
	b.WriteString("dsmode: local\n")
	fmt.Fprintf(&b, "instance-id: %s\n", instanceID)
	if hostname != "" {
		fmt.Fprintf(&b, "local-hostname: %s\n", yq(hostname))
	}
	return []byte(b.String())
}

// firstrunFile is Bookworm's first-boot script, run once by systemd.run=
// from cmdline.txt: the settings through raspberrypi-sys-mods'
// imager_custom when the image has it (as Raspberry Pi Imager's own
// firstrun.sh), a plain fallback otherwise, then setup.sh. It removes
// itself and its cmdline.txt entry and always exits 0, since systemd
// reboots after it either way; a failed setup is in setup.log.
func firstrunScript(s settings) []byte {
	var b strings.Builder
	b.WriteString("#!/bin/bash\n# " + marker + "; running it again rewrites this file.\n")
	b.WriteString("set +e\n\nIMAGER_CUSTOM=/usr/lib/raspberrypi-sys-mods/imager_custom\n")
	if s.hostname != "" {
		fmt.Fprintf(&b, `
NEW_HOSTNAME=%s
CURRENT_HOSTNAME=$(tr -d " \t\n\r" </etc/hostname)
if [ -f "$IMAGER_CUSTOM" ]; then
	"$IMAGER_CUSTOM" set_hostname "$NEW_HOSTNAME"
else
	echo "$NEW_HOSTNAME" >/etc/hostname
	sed -i "s/127.0.1.1.*$CURRENT_HOSTNAME/127.0.1.1\t$NEW_HOSTNAME/g" /etc/hosts
fi
`, shq(s.hostname))
	}
	if s.user != "" {
		fmt.Fprintf(&b, `
NEW_USER=%s
FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)
if [ -z "$FIRSTUSER" ]; then
	useradd -m -u 1000 -s /bin/bash -G users,adm,dialout,audio,netdev,video,plugdev,input,gpio,spi,i2c,sudo "$NEW_USER"
elif [ "$FIRSTUSER" != "$NEW_USER" ]; then
	usermod -l "$NEW_USER" "$FIRSTUSER"
	usermod -m -d "/home/$NEW_USER" "$NEW_USER"
	groupmod -n "$NEW_USER" "$FIRSTUSER"
fi
%s
echo "$NEW_USER ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/010_iotimage-nopasswd
chmod 0440 /etc/sudoers.d/010_iotimage-nopasswd
# No first-boot user wizard: the user exists.
systemctl disable userconfig.service 2>/dev/null
`, shq(s.user), passwordLine(s.passwordHash))
	}
	if len(s.sshKeys) > 0 {
		keys := strings.Join(s.sshKeys, "\n")
		fmt.Fprintf(&b, `
SSH_KEYS=%s
SSH_USER=$(getent passwd 1000 | cut -d: -f1)
SSH_HOME=$(getent passwd 1000 | cut -d: -f6)
if [ -f "$IMAGER_CUSTOM" ]; then
	"$IMAGER_CUSTOM" enable_ssh -k "$SSH_KEYS"
else
	install -o "$SSH_USER" -m 700 -d "$SSH_HOME/.ssh"
	printf '%%s\n' "$SSH_KEYS" >"$SSH_HOME/.ssh/authorized_keys"
	chown "$SSH_USER" "$SSH_HOME/.ssh/authorized_keys"
	chmod 600 "$SSH_HOME/.ssh/authorized_keys"
	echo 'PasswordAuthentication no' >/etc/ssh/sshd_config.d/10-iotimage.conf
	systemctl enable ssh
fi
`, shq(keys))
	}
	if s.wifiSSID != "" {
		fmt.Fprintf(&b, `
WIFI_SSID=%s
WIFI_PSK=%s
WIFI_COUNTRY=%s
if [ -f "$IMAGER_CUSTOM" ]; then
	"$IMAGER_CUSTOM" set_wlan "$WIFI_SSID" "$WIFI_PSK" "$WIFI_COUNTRY"
else
	NM=/etc/NetworkManager/system-connections/preconfigured.nmconnection
	umask 077
	cat >"$NM" <<NMEOF
[connection]
id=preconfigured
type=wifi
[wifi]
mode=infrastructure
ssid=$WIFI_SSID
[wifi-security]
key-mgmt=wpa-psk
psk=$WIFI_PSK
[ipv4]
method=auto
[ipv6]
method=auto
NMEOF
	umask 022
	[ -n "$WIFI_COUNTRY" ] && command -v raspi-config >/dev/null && raspi-config nonint do_wifi_country "$WIFI_COUNTRY"
	rfkill unblock wifi 2>/dev/null
fi
`, shq(s.wifiSSID), shq(s.wifiPSK), shq(s.wifiCountry))
	}
	fmt.Fprintf(&b, `
sh %[1]s/%[2]s --no-start

rm -f %[1]s/%[3]s
sed -i 's| systemd.run=%[1]s/%[3]s systemd.run_success_action=reboot systemd.unit=kernel-command-line.target||' %[1]s/%[4]s
exit 0
`, deviceBoot, setupScript, firstrunFile, cmdlineFile)
	return []byte(b.String())
}

// passwordLine sets the first user's password hash, or locks it.
func passwordLine(hash string) string {
	if hash == "" {
		return "# No password (log in with the SSH key): locked.\nusermod -L \"$NEW_USER\""
	}
	return "echo \"$NEW_USER:\"" + shq(hash) + " | chpasswd -e"
}

// withCmdlineEntry returns cmdline.txt's single line with the firstrun
// entry appended once (or removed when add is false), and whether it held
// another systemd.run= (someone else's first-boot script).
func withCmdlineEntry(cmdline []byte, add bool) (out []byte, foreign string) {
	line := strings.TrimRight(strings.SplitN(string(cmdline), "\n", 2)[0], " \r\t")
	line = strings.Replace(line, cmdlineEntry, "", 1)
	for _, f := range strings.Fields(line) {
		if strings.HasPrefix(f, "systemd.run=") {
			foreign = f
		}
	}
	if add {
		line += cmdlineEntry
	}
	return []byte(line + "\n"), foreign
}

// withoutForeignRun drops the first-boot parameters of someone else's
// firstrun from the cmdline (--replace-user-data).
func withoutForeignRun(cmdline []byte) []byte {
	line := strings.TrimRight(strings.SplitN(string(cmdline), "\n", 2)[0], " \r\t")
	var keep []string
	for _, f := range strings.Fields(line) {
		if strings.HasPrefix(f, "systemd.run") || f == "systemd.unit=kernel-command-line.target" {
			continue
		}
		keep = append(keep, f)
	}
	return []byte(strings.Join(keep, " ") + "\n")
}

// isOurs reports whether a hook file was written by iotimage.
func isOurs(data []byte) bool { return bytes.Contains(data, []byte(marker)) }

// isStockUserData reports whether user-data is the image's own template
// (pi-gen's: comments, and ssh_pwauth: false) or empty: nothing a person
// configured.
func isStockUserData(data []byte) bool {
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || l == "ssh_pwauth: false" {
			continue
		}
		return false
	}
	return true
}

// configuresWifi reports whether a network-config sets up Wi-Fi (the
// image's own only has Ethernet and commented-out examples).
func configuresWifi(data []byte) bool {
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "wifis:") {
			return true
		}
	}
	return false
}
