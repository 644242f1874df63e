# swarmlet: `make demo` runs a local 3-node cluster doing real work; `make test` runs the tests.
GO      ?= go
BIN     := bin
export CGO_ENABLED ?= 0

.PHONY: all build test demo lint image scenarios bench clean

all: build

build:
	$(GO) build -o $(BIN)/swarmlet ./cmd/swarmlet
	$(GO) build -o $(BIN)/whoami ./cmd/whoami

# Unit and integration tests (real processes on 127.0.0.x, Docker where it runs,
# network namespaces for netfilter) plus the short scenario subset.
test: build
	$(GO) vet ./...
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

clean:
	rm -rf $(BIN) results
