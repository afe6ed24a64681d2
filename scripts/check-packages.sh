#!/usr/bin/env bash
# Checks the .deb files that `make package` left in dist/: their metadata
# and contents, lintian, then (as root, on Debian) installs the amd64 one,
# runs it, verifies the unit and walks remove -> reinstall -> purge. CI runs
# it; it changes the machine (installs the package, adds the iotagent user).
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=${DIST:-dist}

fail() { echo "check-packages: FAIL: $*" >&2; exit 1; }
ok() { echo "check-packages: ok: $*"; }

debs=("$DIST"/iotagent_*.deb)
[ -e "${debs[0]}" ] || fail "no packages in $DIST: run make package"
[ "${#debs[@]}" = 3 ] || fail "want 3 packages in $DIST, found ${#debs[@]}: ${debs[*]} (make clean, then make package)"

want_files=(./usr/bin/iotagent ./etc/iotagent/config.json ./lib/systemd/system/iotagent.service
	./usr/share/doc/iotagent/copyright ./usr/share/doc/iotagent/changelog.gz ./usr/share/man/man1/iotagent.1.gz
	./usr/share/polkit-1/rules.d/50-iotagent.rules ./usr/share/doc/iotagent/config-reference.md
	./usr/share/bash-completion/completions/iotagent ./usr/share/zsh/vendor-completions/_iotagent
	./usr/share/fish/vendor_completions.d/iotagent.fish)
for deb in "${debs[@]}"; do
	echo "== $deb"
	dpkg-deb --info "$deb"
	dpkg-deb --contents "$deb"
	arch=$(dpkg-deb --field "$deb" Architecture)
	contents=$(dpkg-deb --contents "$deb" | awk '{print $6}')
	for f in "${want_files[@]}"; do
		grep -qxF "$f" <<<"$contents" || fail "$deb lacks $f"
	done
	[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/iotagent/config.json ] || fail "$deb: conffiles is not /etc/iotagent/config.json"
	# The binary inside is for the package's architecture (armhf = ARMv6, as
	# Raspberry Pi OS 32-bit expects).
	info=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/iotagent | file -)
	case $arch in
	armhf) want="ARM, EABI5" ;;
	arm64) want="ARM aarch64" ;;
	amd64) want="x86-64" ;;
	*) fail "$deb: unexpected architecture $arch" ;;
	esac
	if ! grep -q "$want" <<<"$info" || ! grep -q "statically linked" <<<"$info"; then
		fail "$deb: binary is $info, want static $want"
	fi
	ok "$deb ($arch): contents, conffiles, static $want binary"
done

# lintian refuses nothing as root, but says it would rather not be.
lint=(lintian --fail-on "error,warning" --info --pedantic)
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	lint=(runuser -u nobody -- "${lint[@]}")
fi
"${lint[@]}" "${debs[@]}" || fail "lintian"
ok "lintian (pedantic), with the overrides in packaging/lintian-overrides"

[ "$(id -u)" = 0 ] || { echo "check-packages: not root: skipping the install checks"; exit 0; }
amd64=$(ls "$DIST"/iotagent_*_amd64.deb)
if dpkg -s iotagent >/dev/null 2>&1; then dpkg --purge iotagent >/dev/null; fi

dpkg -i "$amd64"
out=$(iotagent version)
echo "$out"
commit=$(git rev-parse --short HEAD 2>/dev/null || true)
[ -z "$commit" ] || grep -q "$commit" <<<"$out" || fail "installed iotagent is not from commit $commit: $out (stale dist/? make clean package)"
iotagent config validate || fail "the packaged /etc/iotagent/config.json does not validate"
# What --help and the man page point at is installed, and the completions
# are the installed binary's.
grep -q /usr/share/doc/iotagent/config-reference.md <<<"$(iotagent help)" || fail "iotagent help does not name the installed config reference"
[ -s /usr/share/doc/iotagent/config-reference.md ] || fail "no config reference"
for f in bash:/usr/share/bash-completion/completions/iotagent zsh:/usr/share/zsh/vendor-completions/_iotagent fish:/usr/share/fish/vendor_completions.d/iotagent.fish; do
	cmp -s <(iotagent completion "${f%%:*}") "${f#*:}" || fail "${f#*:} is not what iotagent completion ${f%%:*} prints"
done
if command -v bash >/dev/null; then
	bash -c 'source /usr/share/bash-completion/completions/iotagent && complete -p iotagent' >/dev/null || fail "the bash completion does not register"
fi
systemd-analyze verify /lib/systemd/system/iotagent.service || fail "systemd-analyze verify"
systemd-analyze security --offline=true --no-pager /lib/systemd/system/iotagent.service | tail -1
[ "$(stat -c '%U:%G %a' /var/lib/iotagent)" = "iotagent:iotagent 700" ] || fail "/var/lib/iotagent is $(stat -c '%U:%G %a' /var/lib/iotagent)"
getent passwd iotagent | grep -q ':/usr/sbin/nologin$' || fail "no system user iotagent"
for g in gpio i2c tss; do getent group "$g" >/dev/null || fail "no group $g"; done
[ -L /etc/systemd/system/multi-user.target.wants/iotagent.service ] || fail "iotagent.service not enabled"
ok "installed: version, config validate, unit verified, user, state dir 0700, service enabled"

# The polkit rule grants iotagent reboot and nothing else (polkit runs its
# rules in a JavaScript engine; node stands in for it when installed).
rules=/usr/share/polkit-1/rules.d/50-iotagent.rules
if command -v node >/dev/null; then
	node -e '
const polkit = {addRule: f => rule = f, Result: {YES: "yes"}}; let rule;
new Function("polkit", require("fs").readFileSync(process.argv[1], "utf8"))(polkit);
const t = (id, user) => rule({id}, {user});
if (t("org.freedesktop.login1.reboot", "iotagent") !== "yes" || t("org.freedesktop.login1.power-off", "iotagent") ||
    t("org.freedesktop.login1.reboot", "pi")) process.exit(1);' "$rules" || fail "$rules does not grant iotagent reboot alone"
	ok "polkit rule: iotagent may reboot, nothing else"
else
	echo "check-packages: node not installed: $rules not evaluated"
fi

# OTA: postinst made the slots; the unit's ExecStart (ota/current) and
# ExecStartPre (ota/committed ... ota prestart) run the packaged version,
# owned by iotagent; both steps the unit runs as iotagent work.
check_ota() {
	local cur=/var/lib/iotagent/ota/current/iotagent dir=/var/lib/iotagent/ota
	[ -x "$cur" ] || fail "no executable $cur after install (postinst: iotagent ota init --upgrade)"
	[ "$(stat -L -c %U:%G "$cur")" = iotagent:iotagent ] || fail "$cur is owned by $(stat -L -c %U:%G "$cur"), want iotagent"
	[ -z "$(find "$dir" ! -user iotagent)" ] || fail "not owned by iotagent under $dir: $(find "$dir" ! -user iotagent)"
	[ "$("$cur" version)" = "$out" ] || fail "$cur prints '$("$cur" version)', want the packaged '$out'"
	[ "$(readlink -f "$cur")" = "$(readlink -f $dir/committed/iotagent)" ] || fail "current and committed differ before any update"
	runuser -u iotagent -- /usr/bin/iotagent ota init --state-dir /var/lib/iotagent >/dev/null || fail "ota init (ExecStartPre) as iotagent"
	pre=$(runuser -u iotagent -- $dir/committed/iotagent ota prestart --state-dir /var/lib/iotagent) || fail "ota prestart (ExecStartPre) as iotagent"
	[ "$pre" = "ota prestart: slot a" ] || fail "ota prestart says '$pre', want slot a"
}
check_ota
ok "OTA: $(readlink /var/lib/iotagent/ota/current) holds the packaged version, owned by iotagent; ota init and prestart run as iotagent"

# remove keeps identity, state and the admin's config; purge deletes them.
install -d -m 0700 -o iotagent -g iotagent /var/lib/iotagent/identity
echo test >/var/lib/iotagent/identity/device.crt
sed -i 's/"chocolate-box-1"/"box-under-test"/' /etc/iotagent/config.json
dpkg -r iotagent
[ ! -e /usr/bin/iotagent ] || fail "/usr/bin/iotagent left after remove"
[ -f /var/lib/iotagent/identity/device.crt ] || fail "remove deleted the identity"
grep -q box-under-test /etc/iotagent/config.json || fail "remove lost the edited config"
[ -x /var/lib/iotagent/ota/current/iotagent ] || fail "remove deleted the OTA slots"
dpkg -i "$amd64"
grep -q box-under-test /etc/iotagent/config.json || fail "reinstall replaced the edited config"
iotagent config validate
check_ota
ok "remove kept identity, OTA slots and config; reinstall kept the edited config"
dpkg --purge iotagent
[ ! -e /var/lib/iotagent ] || fail "purge left /var/lib/iotagent (and its OTA slots)"
[ ! -e /etc/iotagent ] || fail "purge left /etc/iotagent"
[ ! -e /etc/systemd/system/multi-user.target.wants/iotagent.service ] || fail "purge left the enable symlink"
ok "purge removed state, config and the enable symlink"
