# dw build. Needs nothing but Go; pinned tools are installed into bin/tools.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/datawarehouse/dw/host.Version=$(VERSION)
TEST_TIMEOUT ?= 20m

# Pinned tool versions (make proto, make lint).
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
STATICCHECK_VERSION := v0.8.2
TOOLS := $(CURDIR)/bin/tools

PLUGINS := $(notdir $(patsubst %/,%,$(wildcard plugins/*/)))
EXAMPLES := kvcache
# Every Go module of the repository: the host (.), the SDK and each example.
# A nested go.mod hides its folder from `go test ./...` at the root, so every
# target below visits each module; scripts/check-modules.sh fails when a
# go.mod is missing from this list.
MODULES := . sdk $(addprefix examples/,$(EXAMPLES))

.PHONY: all build run test bench lint fmt proto proto-check tools clean check-modules readme

all: build

build: check-modules
	@mkdir -p bin/plugins bin/examples
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/dw ./cmd/dw
	@for p in $(PLUGINS); do \
		echo "$(GO) build -o bin/plugins/dw-plugin-$$p ./plugins/$$p"; \
		$(GO) build -ldflags '$(LDFLAGS)' -o bin/plugins/dw-plugin-$$p ./plugins/$$p || exit 1; \
	done
	@for e in $(EXAMPLES); do \
		echo "(cd examples/$$e && $(GO) build -o ../../bin/examples/dw-plugin-$$e .)"; \
		(cd examples/$$e && $(GO) build -o ../../bin/examples/dw-plugin-$$e .) || exit 1; \
	done

# Starts the host on config/dw.yaml (the embedded defaults) in the foreground.
run: build
	./bin/dw serve --config config/dw.yaml

# All tests, with the race detector. Fuzz targets run their checked-in
# seed corpus as ordinary tests. PostgreSQL server binaries are installed
# first if missing (scripts/ensure-postgres.sh; the tests start their own
# throwaway servers), and promtool, which lints GET /metrics
# (scripts/ensure-promtool.sh).
test: check-modules
	./scripts/ensure-postgres.sh
	./scripts/ensure-promtool.sh
	@for m in $(MODULES); do \
		echo "(cd $$m && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...)"; \
		(cd $$m && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...) || exit 1; \
	done

# Benchmarks: the figures of the closing notes.
bench: build
	./scripts/ensure-postgres.sh
	@for m in $(MODULES); do \
		(cd $$m && $(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...) || exit 1; \
	done

# Regenerates the plugin references in README.md (dw plugin docs of each
# first-party plugin, between the BEGIN/END dw plugin docs markers);
# TestREADMEPluginDocs fails when they are stale.
readme:
	$(GO) test -count=1 -run TestREADMEPluginDocs ./cmd/dw -update

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

lint: check-modules $(TOOLS)/staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do \
		echo "module $$m: go vet, staticcheck, go mod tidy -diff"; \
		(cd $$m && $(GO) vet ./... && $(TOOLS)/staticcheck ./... && $(GO) mod tidy -diff) || exit 1; \
	done

# Fails when a go.mod of the repository is not in MODULES (so no target
# would build, test or lint it).
check-modules:
	@./scripts/check-modules.sh $(MODULES)

tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/staticcheck

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Regenerates every .pb.go from the .proto files with the pinned tools.
PROTO_MODULES := sdk/proto examples/kvcache/proto host/api/testdata/echoplugin/proto
proto: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	@for m in $(PROTO_MODULES); do \
		echo "buf generate $$m"; \
		PATH=$(TOOLS):$$PATH $(TOOLS)/buf generate --template buf.gen.yaml -o $$m $$m || exit 1; \
	done

# Fails when the committed generated code differs from a fresh generation.
proto-check: proto
	@git diff --exit-code -- '*.pb.go' || { echo "generated code is stale: run make proto and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- '*.pb.go'); \
		if [ -n "$$untracked" ]; then echo "uncommitted generated files: $$untracked"; exit 1; fi

clean:
	rm -rf bin/dw bin/plugins bin/examples
