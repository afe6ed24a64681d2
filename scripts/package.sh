#!/usr/bin/env bash
# Builds the iotagent .deb packages (armhf, arm64, amd64) in dist/ from the
# static binaries that `make cross` left there, with nfpm (pinned, built
# from the Go module proxy; not a dependency of the module). `make package`
# runs it. Layout and maintainer scripts: packaging/.
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM_VERSION=v2.44.1 # v2.46+ needs modules the Go module proxy does not serve
DIST=${DIST:-dist}
TOOLS=$PWD/bin/tools

die() { echo "package: $*" >&2; exit 1; }

# Debian version from git describe: tag v1.2.3 -> 1.2.3; 4 commits after it
# -> 1.2.3+git4.gabcdef; no tag -> 0.0.0+gitN.gabcdef (N = commit count, so
# versions still sort in order); not a git tree -> 0.0.0~dev.
pkg_version() {
	local desc tag n hash
	if desc=$(git describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
		tag=${desc%-*-g*} n=${desc%-g*} hash=${desc##*-g}
		n=${n##*-} tag=${tag#v}
		if [ "$n" = 0 ]; then echo "$tag"; else echo "$tag+git$n.g$hash"; fi
	elif hash=$(git rev-parse --short HEAD 2>/dev/null); then
		echo "0.0.0+git$(git rev-list --count HEAD).g$hash"
	else
		echo "0.0.0~dev"
	fi
}
# PKG_VERSION and PKG_ARCHES (a subset of "armhf arm64 amd64") may be set:
# the virtual device's test (make test-vm) packages a release-numbered
# amd64 build of its own.
PKG_VERSION=${PKG_VERSION:-$(pkg_version)}
PKG_VERSION=${PKG_VERSION//-/.} # a hyphen would start a Debian revision
[[ $PKG_VERSION =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "bad Debian version $PKG_VERSION"

# Reproducible: file times from the last commit.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# Every Go module linked into iotagent must be named in the copyright file.
missing=$(go list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}}{{end}}{{end}}' ./cmd/iotagent | sort -u |
	while read -r m; do grep -q "^ $m " packaging/copyright || echo "$m"; done)
[ -z "$missing" ] || die "add these modules and their licences to packaging/copyright: $missing"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

# The packaged config is the Pi profile with the system CA bundle as root
# CA: Debian's ca-certificates holds Amazon Root CA 1-4 (and Starfield),
# which sign every AWS IoT Core ATS endpoint.
sed 's#"root_ca": "[^"]*"#"root_ca": "/etc/ssl/certs/ca-certificates.crt"#' configs/chocolate-box-pi.json >"$STAGE/config.json"
grep -q '"root_ca": "/etc/ssl/certs/ca-certificates.crt"' "$STAGE/config.json" || die "could not set root_ca in the packaged config"

{
	echo "iotagent ($PKG_VERSION) unstable; urgency=medium"
	echo
	echo "  * Build of commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
	echo
	echo " -- iotagent developers <iotagent@users.noreply.github.com>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$STAGE/changelog.gz"
sed "s/^\.TH IOTAGENT 1 \"\"/.TH IOTAGENT 1 \"$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)\"/" packaging/iotagent.1 | gzip -9n >"$STAGE/iotagent.1.gz"
# Shell completions, from the command table (`iotagent completion`), kept
# in dist/completion too for other installs.
mkdir -p "$DIST/completion" "$STAGE/completion"
CGO_ENABLED=0 go build -o "$STAGE/iotagent-host" ./cmd/iotagent
for f in bash:iotagent.bash zsh:_iotagent fish:iotagent.fish; do
	"$STAGE/iotagent-host" completion "${f%%:*}" >"$DIST/completion/${f#*:}" || die "iotagent completion ${f%%:*}"
	[ -s "$DIST/completion/${f#*:}" ] || die "iotagent completion ${f%%:*} printed nothing"
	cp "$DIST/completion/${f#*:}" "$STAGE/completion/${f#*:}"
done
rm "$STAGE/iotagent-host"
touch -d "@$SOURCE_DATE_EPOCH" "$STAGE"/* "$STAGE"/completion/*

if ! [ -x "$TOOLS/nfpm" ] || ! "$TOOLS/nfpm" --version 2>/dev/null | grep -q "${NFPM_VERSION#v}"; then
	GOBIN=$TOOLS GOFLAGS='' go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
fi

rm -f "$DIST"/iotagent_*.deb # older versions would confuse check-packages.sh
for pair in armhf:armv6 arm64:arm64 amd64:amd64; do
	deb_arch=${pair%%:*} go_arch=${pair#*:}
	[[ " ${PKG_ARCHES:-armhf arm64 amd64} " == *" $deb_arch "* ]] || continue
	binary=$DIST/iotagent-linux-$go_arch
	[ -x "$binary" ] || die "$binary is missing: run make cross first"
	file=$DIST/iotagent_${PKG_VERSION}_$deb_arch.deb
	rm -f "$file"
	DEB_ARCH=$deb_arch PKG_VERSION=$PKG_VERSION BINARY=$binary STAGE=$STAGE \
		"$TOOLS/nfpm" pkg --packager deb --config packaging/nfpm.yaml --target "$file" >"$STAGE/nfpm.log" 2>&1 ||
		die "nfpm for $deb_arch: $(cat "$STAGE/nfpm.log")"
	printf '%-40s %9d bytes (binary %d bytes)\n' "$file" "$(stat -c %s "$file")" "$(stat -c %s "$binary")"
done
