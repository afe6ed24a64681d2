# iotagent and iotsim. `make help` lists the targets.
MODULE   := github.com/iotagent/iotagent
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X $(MODULE)/internal/version.stamp=iotagent-version:$(VERSION); -X $(MODULE)/internal/version.Commit=$(COMMIT)
GO       ?= go
BIN      := bin
DIST     := dist
# staticcheck is pinned here, not with a `tool` directive in go.mod: a tool
# directive would put staticcheck's own module graph (x/tools, ...) into
# go.mod and go.sum, beside the agent's few dependencies, for a linter that
# only `make lint` runs. `go run pkg@version` builds exactly this version
# (cached after the first run), whatever staticcheck is on the PATH.
STATICCHECK_VERSION := v0.8.2
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: help build test demo demo-console lint cross fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/iotagent, bin/iotsim and bin/iotimage for this machine
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/iotagent ./cmd/iotsim ./cmd/iotimage

test: ## vet and run every test with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

demo: build ## run iotsim and a simulated chocolate box end to end
	$(GO) run ./scripts/demo --bin $(BIN)

DEMOFLAGS ?=
demo-console: build ## make demo with the cloud side: the alarm rule, a webhook, the web console (DEMOFLAGS=--keep-running keeps it up)
	$(GO) run ./scripts/demo --bin $(BIN) --console $(DEMOFLAGS)

lint: ## gofmt, go vet and staticcheck (the version pinned in STATICCHECK_VERSION)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

cross: ## static iotagent for the Pi: armv6, armv7, arm64 (and amd64) in dist/
	@mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/iotagent-linux-armv6 ./cmd/iotagent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/iotagent-linux-armv7 ./cmd/iotagent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/iotagent-linux-arm64 ./cmd/iotagent
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/iotagent-linux-amd64 ./cmd/iotagent
	@ls -l $(DIST)/

.PHONY: package test-arm
package: cross ## .deb packages (armhf, arm64, amd64) in dist/ with nfpm; scripts/check-packages.sh checks them
	./scripts/package.sh

test-arm: ## unit tests for arm64 and armv7 under qemu-user-static, then an arm64 agent round trip against iotsim
	./scripts/test-arm.sh

.PHONY: test-vm test-vm-long vm
# The virtual device (vm/, docs/testing.md): vm/image/build.sh builds the
# Debian image once (cached by its inputs in ~/.cache/iotagent-vm) and
# prints its directory.
VMTEST = img=$$(./vm/image/build.sh) && $(GO) test -race -count=1 -v ./vm -vm.image "$$img"
test-vm: ## the device scenarios in a Debian VM under qemu (systemd, the .deb, kernel GPIO and TPM, reboots, 5 power cuts), then cards iotimage prepared
	$(VMTEST) -timeout 45m
test-vm-long: ## test-vm with 50 power cuts
	$(VMTEST) -timeout 180m -vm.powercuts 50
vm: ## boot the virtual chocolate box with a root shell on its serial console (poweroff ends it)
	img=$$(./vm/image/build.sh) && $(GO) run ./vm/cmd/iotvm -image "$$img"

.PHONY: test-ota-long
test-ota-long: ## OTA end to end with 200 updates interrupted by kill -9 (make test runs 50)
	$(GO) test -race -count=1 -timeout 30m -v -run 'TestKillNineDuringUpdate' ./ota/e2e -e2e.killruns=200

FUZZTIME ?= 10s
fuzz: ## run every fuzz target for FUZZTIME (default 10s) each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

BENCHFLAGS ?=
bench: build cross ## measure agent and iotsim (BENCHFLAGS="--quick" for a smoke run) and update BENCHMARKS.md
	$(GO) run ./scripts/bench --bin $(BIN) --dist $(DIST) --out BENCHMARKS.md $(BENCHFLAGS)

# make chaos: the real agent against iotsim serve under every fault class
# (scripts/chaos, docs/testing.md "Chaos and soak"). CHAOS_TIME bounds the
# run: half for the classes' active time, half for settling; CI runs
# CHAOS_TIME=3m (about 2.5 min).
CHAOS_TIME ?= 8m
SOAK_TIME ?= 1h
CHAOSFLAGS ?=
.PHONY: chaos soak
chaos: build ## the agent binary against iotsim serve under every fault class (CHAOS_TIME=8m, ~6 min): 0 alarms lost, shadow and jobs settle, no leaks
	$(GO) run ./scripts/chaos --bin $(BIN) --time $(CHAOS_TIME) $(CHAOSFLAGS)
soak: build ## make chaos round after round for SOAK_TIME (1h); reports the agent's RSS drift after a 5-minute warm-up (goal under 1 MiB)
	$(GO) run ./scripts/chaos --bin $(BIN) --soak $(SOAK_TIME) $(CHAOSFLAGS)

N ?= 200
PARALLEL ?= 32
REHEARSALFLAGS ?=
.PHONY: provision-rehearsal
provision-rehearsal: ## provision N (200) devices, PARALLEL (32) at once, against iotsim; REHEARSALFLAGS="-csr" or "-tpm auto"
	$(GO) run ./scripts/rehearsal -n $(N) -parallel $(PARALLEL) $(REHEARSALFLAGS)

clean: ## remove build output
	rm -rf $(BIN) $(DIST)
