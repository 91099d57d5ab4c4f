# joules — build, test, lint, bench, demo.
GO        ?= go
BIN       := bin
PKG       := github.com/joules-energy/joules
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=$(BRANCH)
STATICCHECK_VERSION := v0.8.2
# go-nvml's cgo bindings include deprecated NVML calls; their warnings are noise.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: all build test test-short lint bench demo golden clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The whole suite: unit tests, the built agent end to end, a real Prometheus
# scraping it (needs prometheus and promtool; .ci/run installs them).
test:
	$(GO) test -count=1 -timeout 15m ./...

test-short:
	$(GO) test -short -count=1 ./...

lint:
	$(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# Go benchmarks plus the whole-process comparison with node_exporter; figures go to BENCHMARKS.md.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./scripts/bench-agent -agent $(BIN)/joules-agent

# Regenerate golden files after an intended change of output.
golden: build
	JOULES_UPDATE_GOLDEN=1 $(GO) test -count=1 -run Golden ./...

# The whole pipeline on this machine (InfluxDB, aggregator, simulated BMCs
# and PDU, an agent with eight simulated H200s) until Ctrl-C.
demo: build
	scripts/demo.sh

clean:
	rm -rf $(BIN) dist
