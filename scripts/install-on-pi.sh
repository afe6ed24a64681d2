#!/usr/bin/env bash
# Installs iotagent on a Raspberry Pi over SSH, for developers:
#   scripts/install-on-pi.sh [--no-build] [--config FILE] [--identity DIR] [--start] [USER@]HOST
# Builds the .deb packages (make package), copies the one for the Pi's
# architecture and installs it with apt. --config installs FILE as
# /etc/iotagent/config.json and validates it there; --identity copies
# DIR/device.crt and DIR/device.key into /var/lib/iotagent/identity;
# --start (re)starts iotagent.service. SSH_OPTS adds options to ssh and scp.
# See docs/raspberry-pi.md.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,3p' "$0" | sed 's/^# *//' >&2; exit 2; }
die() { echo "install-on-pi: $*" >&2; exit 1; }

build=1 config='' identity='' start=0 host=''
while [ $# -gt 0 ]; do
	case $1 in
	--no-build) build=0 ;;
	--config) config=${2:?--config needs a file}; shift ;;
	--identity) identity=${2:?--identity needs a directory}; shift ;;
	--start) start=1 ;;
	-h | --help) usage ;;
	-*) die "unknown flag $1" ;;
	*) [ -z "$host" ] || usage; host=$1 ;;
	esac
	shift
done
[ -n "$host" ] || usage
[ -z "$config" ] || [ -f "$config" ] || die "no config file $config"
if [ -n "$identity" ]; then
	for f in device.crt device.key; do [ -f "$identity/$f" ] || die "no $identity/$f"; done
fi

# shellcheck disable=SC2206 # SSH_OPTS is a list of words on purpose
opts=(-o BatchMode=yes ${SSH_OPTS:-})
# shellcheck disable=SC2029 # the arguments are meant to expand here
remote() { ssh "${opts[@]}" "$host" "$@"; }

[ "$build" = 0 ] || make -s package
arch=$(remote dpkg --print-architecture) || die "ssh $host failed"
case $arch in
armhf | arm64 | amd64) ;;
*) die "$host is $arch; packages exist for armhf, arm64 and amd64" ;;
esac
debs=(dist/iotagent_*_"$arch".deb)
[ -f "${debs[0]}" ] || die "no dist/iotagent_*_$arch.deb: run without --no-build"
[ "${#debs[@]}" = 1 ] || die "several packages for $arch in dist/: ${debs[*]}"
deb=${debs[0]}

tmp=$(remote mktemp -d)
trap 'remote rm -rf "$tmp" || true' EXIT
echo "install-on-pi: $deb -> $host ($arch)"
scp -q "${opts[@]}" "$deb" "$host:$tmp/"
remote sudo apt-get install -y -q "$tmp/$(basename "$deb")"

if [ -n "$config" ]; then
	scp -q "${opts[@]}" "$config" "$host:$tmp/config.json"
	remote sudo install -m 0644 "$tmp/config.json" /etc/iotagent/config.json
fi
if [ -n "$identity" ]; then
	scp -q "${opts[@]}" "$identity/device.crt" "$identity/device.key" "$host:$tmp/"
	remote sudo sh -e -c "'install -d -o iotagent -g iotagent -m 0700 /var/lib/iotagent/identity
install -o iotagent -g iotagent -m 0644 $tmp/device.crt /var/lib/iotagent/identity/device.crt
install -o iotagent -g iotagent -m 0600 $tmp/device.key /var/lib/iotagent/identity/device.key'"
fi
remote iotagent version
remote sudo -u iotagent iotagent config validate || die "the config on $host does not validate (see above)"
if [ "$start" = 1 ]; then
	remote sudo systemctl restart iotagent
	remote systemctl --no-pager status iotagent || true
else
	echo "install-on-pi: installed; start it with: ssh $host sudo systemctl start iotagent"
fi
