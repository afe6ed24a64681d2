#!/bin/sh
# Written by iotimage prepare (iotagent): installs the iotagent package from
# this directory on the boot partition, adopts the configuration in
# ../iotagent/ (iotagent firstboot) and enables the service. Run at first
# boot by cloud-init (user-data's runcmd) or by firstrun.sh (Bookworm, with
# --no-start), as root. Running it again does nothing once the same package
# is installed: /var/lib/iotagent-setup/done holds the package's file name.
# Every step is logged to setup.log next to this script (readable when the
# card is put in a PC) and to stdout.
set -u

start=yes
[ "${1:-}" = "--no-start" ] && start=no

here=$(cd "$(dirname "$0")" && pwd)
boot=$(dirname "$here")
log="$here/setup.log"
# IOTAGENT_SETUP_STATE: for tests, another place than /var/lib/iotagent-setup.
state=${IOTAGENT_SETUP_STATE:-/var/lib/iotagent-setup}

say() {
	line="$(date -u '+%Y-%m-%dT%H:%M:%SZ') iotagent-setup: $*"
	echo "$line"
	echo "$line" >>"$log" 2>/dev/null || true
}

# fail STEP WHAT-TO-DO: logs the failure and exits non-zero.
fail() {
	say "FAILED: $1"
	say "what to do: $2"
	sync
	exit 1
}

deb=""
for f in "$here"/iotagent_*.deb; do
	[ -e "$f" ] || continue
	[ -z "$deb" ] || fail "more than one package in $here: $(basename "$deb"), $(basename "$f")" "leave exactly one iotagent_*.deb there (iotimage prepare does), then run: sudo sh $here/setup.sh"
	deb=$f
done
[ -n "$deb" ] || fail "no iotagent_*.deb in $here" "run iotimage prepare on the card again, or copy the package there, then run: sudo sh $here/setup.sh"
name=$(basename "$deb")

if [ -f "$state/done" ] && [ "$(cat "$state/done")" = "$name" ]; then
	echo "iotagent-setup: $name is set up already ($state/done)"
	exit 0
fi

say "setting up $name from $here"
say "step 1/4: apt-get install -y $deb"
if ! apt-get install -y "$deb"; then
	fail "apt-get install -y $deb" "see the output above (journalctl -u cloud-init, or the serial console); the package needs adduser, ca-certificates and init-system-helpers, which Raspberry Pi OS has. Then run: sudo sh $here/setup.sh"
fi
say "step 2/4: iotagent firstboot --user iotagent --boot-dir $boot/iotagent"
if ! iotagent firstboot --user iotagent --boot-dir "$boot/iotagent"; then
	fail "iotagent firstboot: the configuration in $boot/iotagent was not adopted" "the reason is in /var/lib/iotagent/firstboot-error.json and in: iotagent status. Fix the files in $boot/iotagent (iotimage prepare on a PC), then run: sudo sh $here/setup.sh"
fi
say "step 3/4: systemctl enable iotagent"
if ! systemctl enable iotagent; then
	fail "systemctl enable iotagent" "see: systemctl status iotagent; then run: sudo sh $here/setup.sh"
fi
if [ "$start" = yes ]; then
	say "step 4/4: systemctl start --no-block iotagent"
	if ! systemctl start --no-block iotagent; then
		fail "systemctl start --no-block iotagent" "see: systemctl status iotagent and journalctl -u iotagent; then run: sudo sh $here/setup.sh"
	fi
else
	say "step 4/4: not started now (--no-start): iotagent starts at the next boot"
fi
if ! { mkdir -p "$state" && echo "$name" >"$state/done.tmp" && mv "$state/done.tmp" "$state/done"; }; then
	fail "record $state/done" "the package is set up; check that / is writable (df, mount), then run: sudo sh $here/setup.sh"
fi
say "done: $name installed, iotagent enabled; the device provisions itself with the claim certificate and reports (iotagent status)"
sync
exit 0
