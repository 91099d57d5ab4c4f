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

NFPM_VERSION := v2.45.2
# Package versions must start with a digit: the tag, or 0.1.0+git<commit> before the first tag.
PKG_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null); if [ -n "$$v" ]; then echo "$${v#v}"; else echo "0.1.0+git$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"; fi)
ARCH ?= amd64

.PHONY: all build test test-short lint bench bench-agent bench-meters bench-pipeline bench-cluster demo demo-cluster golden package clean fuzz soak

all: build

# node_exporter collectors built into joules-agent. The others are left out
# with node_exporter's own no<collector> build tags (nocpu, nodiskstats, ...):
# their code, flags and dependencies cost memory in every agent even when
# never enabled. `make build ALL_COLLECTORS=1` builds every collector;
# NODE_COLLECTORS="... systemd" adds one. The agent names the way to get a
# collector left out when a config asks for it.
NODE_COLLECTORS ?= netdev infiniband hwmon rapl powersupplyclass thermal_zone cpufreq textfile
ifeq ($(ALL_COLLECTORS),1)
AGENT_TAGS ?=
else
AGENT_TAGS ?= $(shell $(GO) run ./scripts/collector-tags $(NODE_COLLECTORS))
endif

build:
	$(GO) build -trimpath -tags '$(AGENT_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The whole suite: unit tests, the built agent end to end, a real Prometheus
# scraping it, a real InfluxDB (needs prometheus, promtool, chromium,
# systemd-analyze; .ci/run installs them). Builds influxd 1.8.10 when it is
# missing (about 2 minutes once, then cached in $(go env GOPATH)/bin).
# scripts/testsummary prints go test's usual output and ends with the tests
# skipped for a missing component and the command that installs each; the
# exit status is go test's.
INFLUXD_INSTALL := (cd /tmp && GOFLAGS= $(GO) install github.com/influxdata/influxdb/cmd/influxd@v1.8.10)
test:
	@gobin="$$($(GO) env GOPATH)/bin"; \
	if ! command -v influxd >/dev/null 2>&1 && [ ! -x "$$gobin/influxd" ]; then \
		echo "--- building influxd 1.8.10 for the InfluxDB tests (about 2 minutes, once)"; \
		$(INFLUXD_INSTALL) || echo "--- could not build influxd: the InfluxDB tests will skip (on CI, fail)"; \
	fi
	$(GO) build -o $(BIN)/testsummary ./scripts/testsummary
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(BIN)/testsummary $(GO) test -json -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory test-helm

# The Helm chart, offline: lint, render with every values file in
# packaging/helm/joules/ci, strict decoding into the Kubernetes types, the
# aggregator's --config.check on its rendered config. A module of its own,
# so the root module does not depend on Helm.
.PHONY: test-helm
test-helm:
	cd packaging/helm && $(GO) test -count=1 ./...

test-short:
	$(GO) test -short -count=1 ./...

lint:
	$(GO) vet ./...
	cd packaging/helm && $(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# Every fuzz target, each for about ten seconds of executions. Counts, not
# durations: Go 1.26's fuzzing coordinator can fail a duration-bounded run
# with "context deadline exceeded" as the time runs out (go.dev/issue/75804).
# FUZZTIME=5m fuzzes each that long instead. Crashers land in the package's
# testdata/fuzz and become regression tests of `make test`.
FUZZ_TARGETS := aggregator:FuzzIngest:50000x aggregator:FuzzQuickParse:50000x aggregator/accounting:FuzzAccounting:50000x internal/config:FuzzLoadAgent:12000x \
	redfish:FuzzBMCResource:1300x collector:FuzzRAPLZones:60000x nvml:FuzzParseCgroup:50000x \
	snmp:FuzzParseProfile:20000x modbus:FuzzParseMap:20000x cluster:FuzzSiteAndHost:30000x
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${FUZZTIME:-$${rest#*:}}; \
		echo "--- fuzz $$name ($$budget)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $$budget ./$$pkg; \
	done

# 30 minutes of 1,000 simulated hosts against the aggregator and a real
# InfluxDB: RSS, goroutines and open files must stay flat and no point be
# lost; then the aggregator down for 10 minutes under a streaming agent.
# Not in CI (SOAK_DURATION=5m for a shorter one).
SOAK_DURATION ?= 30m
soak: build
	$(GO) run ./scripts/bench-pipeline -mode soak -hosts 1000 -duration $(SOAK_DURATION) -sample 1m
	JOULES_OUTAGE=10m $(GO) test -count=1 -timeout 20m -run 'TestAggregatorDownTwoMinutes' -v ./cmd/joules-aggregator

# Go benchmarks plus the whole-process comparison with node_exporter and the
# agent in the budget's shape (DESIGN.md); figures go to BENCHMARKS.md.
# bench-agent runs only the two whole-process benchmarks.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(MAKE) --no-print-directory bench-agent
	$(MAKE) --no-print-directory bench-meters
	$(MAKE) --no-print-directory bench-pipeline

# The aggregator as shipped against Telegraf's influxdb_v2_listener with
# outputs.discard under the same load, three runs of each load; Telegraf is
# built once into the user's cache folder (several minutes), never into the
# repository. Needs influxd (make test builds it).
bench-pipeline: build
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(GO) run ./scripts/bench-pipeline -mode peer
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(GO) run ./scripts/bench-pipeline -mode fleet -hosts 1000 -duration 60s

# One process, then the tier on NATS JetStream (three nats-server, two
# ingest replicas) with one and three workers, under the same fleet.
BENCH_CLUSTER_HOSTS ?= 10000
bench-cluster: build
	PATH="$$PATH:$$($(GO) env GOPATH)/bin:/usr/sbin" $(GO) run ./scripts/bench-pipeline -mode cluster -hosts $(BENCH_CLUSTER_HOSTS) -series 2 -duration 30s

bench-agent: build
	$(GO) run ./scripts/bench-agent -agent $(BIN)/joules-agent
	$(GO) run ./scripts/bench-agent -goal -agent $(BIN)/joules-agent -joules $(BIN)/joules

# The agent polling 100 simulated SNMP PDUs every 10 s (snmpsimd serving the
# shared recordings of real PDUs), against the same agent without meters and
# against Telegraf's inputs.snmp reading the same OIDs. Needs snmpsimd
# (apt-get install snmpsim); Telegraf is built once into the user's cache
# folder (several minutes), never into the repository.
bench-meters: build
	$(GO) run ./scripts/bench-meters -agent $(BIN)/joules-agent

# Regenerate golden files after an intended change of output.
golden: build
	JOULES_UPDATE_GOLDEN=1 $(GO) test -count=1 -run Golden ./...

# The whole pipeline on this machine (InfluxDB, aggregator, simulated BMCs
# and PDU, an agent with eight simulated H200s) until Ctrl-C.
demo: build
	scripts/demo.sh

# make demo with the aggregator as a tier on NATS JetStream on this
# machine: three NATS servers (Debian's nats-server, installed if
# missing), two ingest replicas, three workers that are roll-up candidates.
demo-cluster: build
	scripts/demo-cluster.sh

# deb and rpm into dist/ (nfpm is installed with go install if missing).
package: build
	@command -v nfpm >/dev/null 2>&1 || $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
	rm -rf dist && mkdir -p dist
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" VERSION="$(PKG_VERSION)" ARCH=$(ARCH) nfpm package --config packaging/nfpm.yaml --packager deb --target dist/
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" VERSION="$(PKG_VERSION)" ARCH=$(ARCH) nfpm package --config packaging/nfpm.yaml --packager rpm --target dist/

clean:
	rm -rf $(BIN) dist
