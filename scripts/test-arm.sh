#!/usr/bin/env bash
# make test-arm: the unit tests cross-compiled for arm64 and armv7 (the
# Raspberry Pi's) and run under qemu-user-static (go test -exec), one
# architecture after the other; then the arm64 iotagent under qemu against
# this machine's iotsim for one connect, shadow sync and motion alarm round
# trip (scripts/demo --agent-exec), with its VmRSS next to amd64's.
#
# -short everywhere, CGO_ENABLED=0: test files that need cgo (tpm's
# in-process TPM simulator) are left out by their build tags. What the
# tests spawn (go list, the aws CLI, swtpm) is this machine's own amd64
# tools, which run natively; the one test that spawns an ARM binary is
# skipped (SKIP below). The race detector needs cgo, so it is off here.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
PKGS=${PKGS:-./...}

for tool in qemu-aarch64-static qemu-arm-static; do
	command -v "$tool" >/dev/null || { echo "test-arm: $tool missing: apt-get install qemu-user-static" >&2; exit 1; }
done

# Skipped under emulation, by name:
#   TestOtherUsersRefused (agent/localapi): builds a helper with `go build`,
#   which inherits GOARCH, and execs it directly, which fails with "exec
#   format error" unless binfmt_misc runs ARM binaries through qemu; this
#   script does not register binfmt_misc, which is global to the kernel.
#   TestBinaryFailuresSayWhy (cmd/iotagent): the same, for the iotagent
#   binary it builds; the arm64 binary itself runs in the round trip below.
#   TestClaimCreateRefusals (cmd/iotsim): each claim is made by iotsim's
#   CreateKeysAndCertificate, an RSA 2048 key as AWS's; under armv7
#   emulation one takes tens of seconds and the test's requests time out.
#   iotsim runs on the workstation, not the Pi; amd64 runs the test.
SKIP='^(TestOtherUsersRefused|TestBinaryFailuresSayWhy|TestClaimCreateRefusals)$'

run_tests() { # name, qemu binary, go env...
	local name=$1 qemu=$2 start=$SECONDS
	shift 2
	echo "== go test -short under $qemu: $name"
	# -p 4: the emulated tests mostly wait on timers and the network, so
	# more packages at a time than cores keeps the wall time down.
	# shellcheck disable=SC2086 # PKGS may list several patterns
	env CGO_ENABLED=0 GOOS=linux "$@" "$GO" test -short -count=1 -p 4 -timeout 5m \
		-skip "$SKIP" -exec "$qemu" $PKGS
	echo "== $name: $((SECONDS - start))s"
}
run_tests linux/arm64 qemu-aarch64-static GOARCH=arm64
run_tests linux/armv7 qemu-arm-static GOARCH=arm GOARM=7

echo "== round trip: arm64 iotagent under qemu-aarch64-static against amd64 iotsim"
make -s build
mkdir -p bin/arm64
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 "$GO" build -trimpath -ldflags "-s -w" -o bin/arm64/iotagent ./cmd/iotagent
"$GO" build -o bin/demo ./scripts/demo
bin/demo --bin bin --agent bin/arm64/iotagent --agent-exec qemu-aarch64-static
echo "== the same with the amd64 iotagent, for its VmRSS"
bin/demo --bin bin | grep -E 'Vm(RSS|HWM)|demo passed'
