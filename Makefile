# swarmlet: `make demo` runs a local 3-node cluster doing real work; `make test` runs the tests.
GO      ?= go
BIN     := bin
export CGO_ENABLED ?= 0

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOARCH  ?= $(shell $(GO) env GOARCH)
DIST    := dist/swarmlet-$(VERSION)-linux-$(GOARCH)

.PHONY: all build test demo lint image scenarios bench bench-scale dist clean

all: build

build:
	$(GO) build -o $(BIN)/swarmlet ./cmd/swarmlet
	$(GO) build -o $(BIN)/whoami ./cmd/whoami

# Unit and integration tests (real processes on 127.0.0.x, Docker where it runs,
# network namespaces for netfilter) plus the short scenario subset.
test: build lint image
	$(GO) test -short -count=1 -timeout 25m ./...

demo: build
	KEEP=$(KEEP) bash cmd/demo/demo.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

# The test image the project owns (FROM scratch; nothing is pulled).
image:
	bash cmd/whoami/build.sh

# The full Jepsen-style suite: a few minutes per scenario.
scenarios: build
	$(GO) test ./scenarios -count=1 -v -timeout 90m

# A multi-host test bed by hand (scenarios/bed): HOSTS namespaces on a private
# bridge, each with its own dockerd and the test image; up until Ctrl-C or bed-down.
.PHONY: bed bed-down
HOSTS ?= 3
bed: image
	$(GO) run ./scenarios/bed/cmd/swlbed up -n $(HOSTS) -load swarmlet/whoami:test

bed-down:
	$(GO) run ./scenarios/bed/cmd/swlbed down

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./raftstore/ ./dispatcher/ ./dnsdisco/

# The node's DNS against dnsmasq: the same names (dnsmasq from a hosts file),
# the same dnsperf query mix, in one run, ROUNDS rounds alternating which goes
# first; q/s, their ratio and CPU per query of each (dnsdisco/DESIGN.md).
# Installs dnsperf and dnsmasq-base (the binary alone: no service starts).
.PHONY: bench-dns
ROUNDS ?= 5
bench-dns:
	@command -v dnsperf >/dev/null && command -v dnsmasq >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dnsperf dnsmasq-base >/dev/null)
	$(GO) test -run '^$$' -bench VersusDnsmasq -benchtime $(ROUNDS)x ./dnsdisco/

# Three real managers and 10, 100, 1000 hollow nodes (bench/hollow) through the
# scale scenario; the table lands in bench/SCALE.md. Takes several minutes.
SCALE_NODES ?= 10,100,1000
bench-scale:
	SCALE_NODES=$(SCALE_NODES) SCALE_OUT=$(CURDIR)/bench/SCALE.md $(GO) test ./bench -run '^$$' -bench Scale -benchtime 1x -timeout 90m -v

# A static binary and a tarball with it and its systemd unit (the unit is the
# binary's own: `swarmlet install --print`). On a VM: copy the binary to
# /usr/local/bin and run `swarmlet install init|join FLAGS...`.
dist:
	rm -rf $(DIST) && mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags "-s -w -X github.com/swarmlet/swarmlet/node.Version=$(VERSION)" -o $(DIST)/swarmlet ./cmd/swarmlet
	$(GO) run ./cmd/swarmlet install --print --bin /usr/local/bin/swarmlet init > $(DIST)/swarmlet.service
	printf '%s\n' "swarmlet $(VERSION)" "" \
		"Install on a VM (as root):" \
		"    install -m 0755 swarmlet /usr/local/bin/swarmlet" \
		"    swarmlet install init --advertise-addr IP          # the first manager" \
		"    swarmlet install join --token TOKEN MANAGER_ADDR   # every other node" \
		"" "swarmlet.service is the unit 'swarmlet install init' writes; 'swarmlet uninstall' removes it." > $(DIST)/INSTALL
	tar -C dist -czf $(DIST).tar.gz $(notdir $(DIST))
	@echo "built $(DIST).tar.gz"

clean:
	rm -rf $(BIN) results dist
