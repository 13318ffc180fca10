# vault-plugin-secrets-snyk
#
#   make dev     build everything, start the simulator and a real Vault with the
#                plugin registered, configure it and read a broker secret
#                (SIM_PROFILE=<name> picks the fake Snyk's answers to undocumented
#                refusals; bin/snyk-sim -list-profiles lists them)
#   make test    lint, unit tests (race detector), fuzzing, the release check,
#                the bootstrap/ manifest checks and end-to-end tests against a
#                real Vault, Vault Agent and the real plugin binary
#   make bench   benchmarks that print figures (engine read vs KV v2, …)
#   make fuzz    every fuzz target for 500,000 executions (FUZZTIME=… to change)

# The version comes from git (scripts/version.sh); VERSION=v1.2.3 overrides it.
ifndef VERSION
VERSION   := $(shell ./scripts/version.sh)
endif
COMMIT    := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILDDATE := $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
GO        ?= go
BIN       := $(CURDIR)/bin
PLUGIN    := $(BIN)/vault-plugin-secrets-snyk
SIM       := $(BIN)/snyk-sim
VAULT     ?= $(BIN)/vault
LDFLAGS   := -s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILDDATE)

.PHONY: all build sim vault broker dev dev-stop test unit fuzz-short fuzz e2e test-ha manifests fmt fmt-check vet lint bench release release-check clean

all: build

# The plugin is rebuilt every time (Go's build cache makes that cheap) so the
# binary always matches the sources it is tested with.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(PLUGIN) ./cmd/vault-plugin-secrets-snyk

sim:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(SIM) ./cmd/snyk-sim

# A real Vault (server and Agent) built from the Go module proxy by the
# wrapper module in scripts/vault. It takes minutes the first time, so the
# target is the file itself: once bin/vault exists it is not rebuilt.
# VAULT=/path/to/vault uses a Vault you already have (1.15 or later: the
# tests rely on plugin versions and running_plugin_version).
VAULT_MODULE_VERSION := $(shell sed -n 's|^require github.com/hashicorp/vault \(v[0-9.]*\)$$|\1|p' scripts/vault/go.mod)
VAULT_BUILD_LOG := $(BIN)/vault-build.log

vault: $(VAULT)
	@v=$$($(VAULT) version | sed -n 's/^Vault v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p'); set -- $$v; \
	if [ -z "$$v" ] || [ "$$1" -lt 1 ] || { [ "$$1" -eq 1 ] && [ "$$2" -lt 15 ]; }; then \
		echo "ERROR: $(VAULT) is not Vault 1.15 or later ($$($(VAULT) version 2>&1 | head -1))"; exit 1; fi

$(VAULT):
ifneq ($(VAULT),$(BIN)/vault)
	@echo "ERROR: VAULT=$(VAULT) does not exist; unset VAULT to build Vault $(VAULT_MODULE_VERSION) into $(BIN)/vault"; exit 1
endif
	@mkdir -p $(BIN)
	@echo "building Vault $(VAULT_MODULE_VERSION) from the Go module proxy into $(VAULT): 6-8 minutes the first time,"
	@echo "reused afterwards. Set VAULT=/path/to/vault to use your own. Progress: $(VAULT_BUILD_LOG)"
	@cd scripts/vault && GOFLAGS="-mod=mod -buildvcs=false" $(GO) build -ldflags "-s -w" -o $(VAULT) . > $(VAULT_BUILD_LOG) 2>&1 || \
		{ echo "ERROR: building Vault failed; the last lines of $(VAULT_BUILD_LOG):"; tail -20 $(VAULT_BUILD_LOG); exit 1; }
	@echo "built $$($(VAULT) version)"

# The real Snyk Broker (server and client) from npm, for the delivery-chain
# tests. Without npm access the install fails and those tests skip, saying so.
# Under CI (CI set) a failed install fails the build: CI must never pass
# without the real Broker.
broker:
	@if [ ! -x scripts/broker/node_modules/.bin/broker ]; then \
		cd scripts/broker && npm ci --no-audit --no-fund --ignore-scripts || { \
		if [ -n "$$CI" ]; then echo "ERROR: npm install of snyk-broker failed (CI requires it)"; exit 1; fi; \
		echo "WARNING: npm install of snyk-broker failed; the delivery-chain tests will be skipped"; }; \
	fi

dev: build sim vault
	VERSION=$(VERSION) VAULT=$(VAULT) ./scripts/dev.sh start

dev-stop:
	./scripts/dev.sh stop

test: fmt-check vet lint unit fuzz-short release-check manifests e2e test-ha

unit:
	$(GO) test -race -count=1 ./backend/... ./cmd/...

# Every fuzz target briefly (its seed corpus in testdata/ also runs in
# `unit`); `make fuzz` runs each far longer. Budgets are execution counts, not
# durations: with a duration, Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" failure when the time runs out on a loaded
# machine (golang/go#75804, fixed in Go 1.27); a count has no deadline.
fuzz-short:
	GO=$(GO) FUZZTIME=20000x ./scripts/fuzz.sh

fuzz:
	GO=$(GO) FUZZTIME=$${FUZZTIME:-500000x} ./scripts/fuzz.sh

FIGURES := $(BIN)/e2e-figures.txt

e2e: build sim vault broker $(HELM)
	@rm -f $(FIGURES)
	HELM_BINARY=$(HELM) VAULT_BINARY=$(VAULT) PLUGIN_BINARY=$(PLUGIN) SIM_BINARY=$(SIM) PLUGIN_VERSION=$(VERSION) E2E_FIGURES=$(FIGURES) \
		$(GO) test -count=1 -timeout 30m -skip '^(TestHA|TestReliability)' ./e2e/...
	@if [ -f $(FIGURES) ]; then echo "--- measured figures"; cat $(FIGURES); fi

# Reliability: the engine on a 3-node Vault cluster with integrated storage
# (Raft), leadership changing in the middle of rotations
# (e2e/ha_cluster_test.go), and upstream fault storms, each on its own
# stack, all at once (e2e/reliability_storms_test.go).
HA_FIGURES := $(BIN)/ha-figures.txt

test-ha: build sim vault
	@rm -f $(HA_FIGURES)
	VAULT_BINARY=$(VAULT) PLUGIN_BINARY=$(PLUGIN) SIM_BINARY=$(SIM) PLUGIN_VERSION=$(VERSION) E2E_FIGURES=$(HA_FIGURES) \
		$(GO) test -count=1 -timeout 15m -parallel 16 -run '^(TestHA|TestReliability)' ./e2e/...
	@if [ -f $(HA_FIGURES) ]; then echo "--- measured figures"; cat $(HA_FIGURES); fi

# What an operator deploys from bootstrap/, checked without deploying it
# (its own Go module in e2e/manifests, so BuildKit and the schema validator
# stay out of the plugin's dependencies): the Dockerfiles linted with
# BuildKit's build checks, the Helm recipe rendered by the real helm and
# validated against the vendored VSO CRDs and snyk-broker values schema, the
# Terraform parsed and checked against the engine's fields.
HELM_VERSION := v3.22.0
HELM := $(BIN)/helm-$(HELM_VERSION)

manifests: $(HELM) broker
	cd e2e/manifests && $(GO) vet ./... && HELM_BINARY=$(HELM) $(GO) test -count=1 ./...

$(HELM):
	@mkdir -p $(BIN)
	@echo "installing helm $(HELM_VERSION) from the Go module proxy (about a minute, once)"
	GOBIN=$(BIN)/.helm GOFLAGS= $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/.helm/helm $(HELM)

fmt:
	gofmt -w $$(git ls-files '*.go')

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# golangci-lint v2 (pinned, installed from the Go module proxy on first use)
# with the configuration in .golangci.yml: the standard linters (staticcheck,
# govet, errcheck, …) plus errorlint, bodyclose, gosec, revive and misspell.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run --timeout 10m ./...

$(GOLANGCI_LINT):
	@mkdir -p $(BIN)
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) from the Go module proxy (a minute or two, once)"
	GOBIN=$(BIN)/.golangci GOFLAGS= $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/.golangci/golangci-lint $(GOLANGCI_LINT)

# The figures of the README's Performance section: Go benchmarks of the
# engine, then against real Vault servers (in-memory and Raft storage) the
# read table at 1, 8 and 64 clients, 1,000 readers at a switch, and 10,000
# integrations (a run of 15-20 minutes; SNYK_PERF_CELL shortens the cells).
bench: build sim vault
	$(GO) test -run '^$$' -bench . -benchmem ./backend/...
	@rm -f $(BIN)/bench-figures.txt
	VAULT_BINARY=$(VAULT) PLUGIN_BINARY=$(PLUGIN) SIM_BINARY=$(SIM) PLUGIN_VERSION=$(VERSION) \
		$(GO) test -run '^$$' -bench . -benchtime 2000x ./e2e/...
	VAULT_BINARY=$(VAULT) PLUGIN_BINARY=$(PLUGIN) SIM_BINARY=$(SIM) PLUGIN_VERSION=$(VERSION) SNYK_PERF=1 E2E_FIGURES=$(BIN)/bench-figures.txt \
		$(GO) test -count=1 -timeout 60m -run '^TestPerformance' ./e2e/...
	@echo; echo "== figures (also in $(BIN)/bench-figures.txt) =="; cat $(BIN)/bench-figures.txt

# Release artifacts in dist/: static binaries per platform, SHA256SUMS and a
# CycloneDX SBOM (cyclonedx-gomod, pinned, installed from the Go module proxy).
CYCLONEDX_VERSION := v1.10.0
CYCLONEDX := $(BIN)/cyclonedx-gomod-$(CYCLONEDX_VERSION)

release: $(CYCLONEDX)
	VERSION=$(VERSION) COMMIT=$(COMMIT) BUILDDATE=$(BUILDDATE) CYCLONEDX=$(CYCLONEDX) GO=$(GO) ./scripts/release.sh

# Builds the release twice and checks it: the sums verify, both builds are
# byte-identical, every binary carries the version, the host's reports it.
release-check: $(CYCLONEDX)
	VERSION=$(VERSION) COMMIT=$(COMMIT) BUILDDATE=$(BUILDDATE) CYCLONEDX=$(CYCLONEDX) GO=$(GO) ./scripts/release-check.sh

$(CYCLONEDX):
	@mkdir -p $(BIN)
	GOBIN=$(BIN)/.cyclonedx GOFLAGS= $(GO) install github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$(CYCLONEDX_VERSION)
	mv $(BIN)/.cyclonedx/cyclonedx-gomod $(CYCLONEDX)

clean:
	rm -rf $(BIN) .dev dist
