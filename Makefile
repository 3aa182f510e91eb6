# jitid — make targets. Every Go command runs over the go.work modules,
# since `./...` at a workspace root finds nothing.

SHELL := /bin/bash
export PATH := $(CURDIR)/.bin:$(PATH)
GOBIN_DIR := $(CURDIR)/.bin

PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
GRPCURL_VERSION := v1.9.3
NATSCLI_VERSION := v0.5.0

MODULE_DIRS = $(shell go list -m -f '{{.Dir}}')
MODULE_PKGS = $(shell go list -m -f '{{.Dir}}/...')
# The tool modules are outside go.work: tidied and checked on their own.
TOOL_DIRS := $(CURDIR)/tools/buf $(CURDIR)/tools/golangci-lint
BINARIES := issuer policy audit jitid-dev jitid-idp

.PHONY: all
all: build test

## tools: buf, golangci-lint and the protoc plugins at pinned versions into .bin/
.PHONY: tools
tools: $(GOBIN_DIR)/buf $(GOBIN_DIR)/golangci-lint $(GOBIN_DIR)/protoc-gen-go $(GOBIN_DIR)/protoc-gen-go-grpc

# buf and golangci-lint are pinned by `tool` directives in modules of their own
# (tools/*/go.mod, outside go.work, hence GOWORK=off): their dependency versions
# stay exactly as their authors tested them, and Go's build cache keeps their
# compiled packages, so a rebuild after `make clean` or on a new clone that
# shares the cache is a link, not buf's 6.5 minutes on a cold cache.
$(GOBIN_DIR)/buf: tools/buf/go.mod tools/buf/go.sum
	cd tools/buf && GOWORK=off go build -o $@ github.com/bufbuild/buf/cmd/buf
$(GOBIN_DIR)/golangci-lint: tools/golangci-lint/go.mod tools/golangci-lint/go.sum
	cd tools/golangci-lint && GOWORK=off go build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint
$(GOBIN_DIR)/protoc-gen-go:
	GOBIN=$(GOBIN_DIR) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(GOBIN_DIR)/protoc-gen-go-grpc:
	GOBIN=$(GOBIN_DIR) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

## clients: install grpcurl and the nats CLI (what operators use)
.PHONY: clients
clients:
	GOBIN=$(GOBIN_DIR) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	GOBIN=$(GOBIN_DIR) go install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

## generate: format the protos and regenerate Go code from proto/ (committed)
.PHONY: generate
generate: $(GOBIN_DIR)/buf $(GOBIN_DIR)/protoc-gen-go $(GOBIN_DIR)/protoc-gen-go-grpc
	buf format -w
	buf generate

## checkgenerate: fail when the committed generated code is not what buf generates now, without writing to the tree
.PHONY: checkgenerate
checkgenerate: $(GOBIN_DIR)/buf $(GOBIN_DIR)/protoc-gen-go $(GOBIN_DIR)/protoc-gen-go-grpc
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && buf generate -o "$$tmp" && \
	if ! diff -r -q -x '*.proto' -x go.mod -x go.sum "$$tmp/proto" proto >/dev/null; then \
		diff -r -u -x '*.proto' -x go.mod -x go.sum "$$tmp/proto" proto | head -50; \
		echo "generated code is stale: run 'make generate' and commit the result"; exit 1; fi

## breaking: buf breaking (WIRE_JSON) against the commit that froze the v1 API
# The v1 protos were frozen at V1_FROZEN: from there on a change may add, never
# break (WIRE_JSON). BREAKING_AGAINST names another git ref to compare with.
V1_FROZEN := 888c74d1175943fd7fadb548759663796daa46c6
BREAKING_AGAINST ?= $(V1_FROZEN)
.PHONY: breaking
breaking: $(GOBIN_DIR)/buf
	@if [ -z "$(BREAKING_AGAINST)" ]; then echo "breaking: no earlier commit to compare with"; \
	else echo "buf breaking against $(BREAKING_AGAINST)"; buf breaking --against '.git#ref=$(BREAKING_AGAINST)'; fi

## tidy: fail when `go mod tidy` would change a go.mod or go.sum
.PHONY: tidy
tidy:
	@status=0; for dir in $(MODULE_DIRS); do \
		(cd "$$dir" && go mod tidy -diff) || { echo "go mod tidy needed in $$dir"; status=1; }; done; \
	for dir in $(TOOL_DIRS); do \
		(cd "$$dir" && GOWORK=off go mod tidy -diff) || { echo "go mod tidy needed in $$dir (GOWORK=off)"; status=1; }; done; \
	exit $$status

## lint: go vet, golangci-lint (per module: at the go.work root it finds nothing), buf lint and buf format
.PHONY: lint
lint: $(GOBIN_DIR)/buf $(GOBIN_DIR)/golangci-lint
	go vet $(MODULE_PKGS)
	@status=0; for dir in $(MODULE_DIRS); do \
		echo "golangci-lint $${dir#$(CURDIR)/}"; \
		(cd "$$dir" && golangci-lint run --config $(CURDIR)/.golangci.yml ./...) || status=1; done; \
	exit $$status
	buf lint
	buf format -d --exit-code

## check: everything CI checks besides the tests (lint, generated code, breaking changes, tidiness)
.PHONY: check
check: lint checkgenerate breaking tidy

## check-test-deps: say in one line what to install when a test server is missing
.PHONY: check-test-deps
check-test-deps:
	@if [ -z "$$JITID_TEST_REDIS_ADDR" ] && ! command -v redis-server >/dev/null; then \
		echo "make test needs redis-server on PATH (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or JITID_TEST_REDIS_ADDR=host:port"; exit 1; fi

## test: every test of every module, with the race detector (writes no file, needs no buf: `make check` holds the other checks)
.PHONY: test
test: check-test-deps
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then \
		echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet $(MODULE_PKGS)
	go test -race -count=1 -timeout 15m $(MODULE_PKGS)

## build: the binaries into bin/
.PHONY: build
build:
	@mkdir -p bin
	cd services/issuer && go build -o ../../bin/issuer ./cmd/issuer
	cd services/policy && go build -o ../../bin/policy ./cmd/policy
	cd services/audit && go build -o ../../bin/audit ./cmd/audit
	cd dev && go build -o ../bin/jitid-dev ./cmd/jitid-dev
	cd dev && go build -o ../bin/jitid-idp ./cmd/jitid-idp

## run: the whole suite in the foreground (Ctrl-C stops it)
.PHONY: run
run: build
	./bin/jitid-dev -bin-dir bin

## bench-micro: go test micro-benchmarks of every module, with allocs/op
.PHONY: bench-micro
bench-micro:
	go test -run '^$$' -bench . -benchmem $(MODULE_PKGS)

# bench and soak: the suite as separate processes (redis-server with AOF,
# NATS with JetStream, policy, issuer, audit) under jitid-load, on 127.0.0.1.
# BENCH_FLAGS adds flags, e.g. BENCH_FLAGS='-runs 5 -duration 20s';
# SOAK_DURATION shortens or lengthens the soak.
BENCH_FLAGS ?=
SOAK_DURATION ?= 10m
SOAK_FLAGS ?=
BENCH_DOC := docs/BENCHMARKS.md

## bench-build: the service and benchmark binaries into bin/
.PHONY: bench-build
bench-build: build
	cd bench && go build -o ../bin/jitid-load ./cmd/jitid-load
	cd testkit && go build -o ../bin/jitid-nats ./cmd/jitid-nats
	cd bench && go build -o ../bin/jitid-echo ./cmd/jitid-echo

## bench: the whole suite under load (about 10 minutes), one table, written into docs/BENCHMARKS.md (micro-benchmarks: bench-micro)
.PHONY: bench
bench: bench-build
	./bin/jitid-load -bin-dir bin -doc $(BENCH_DOC) $(BENCH_FLAGS)

## soak: a steady mix for SOAK_DURATION (10m) watching every service's RSS
.PHONY: soak
soak: bench-build
	./bin/jitid-load -bin-dir bin -doc $(BENCH_DOC) -soak $(SOAK_DURATION) $(SOAK_FLAGS)

## fuzz: a short run of each fuzz target (token parsing in pkg/credverify, token verification in the issuer)
FUZZTIME ?= 15s
.PHONY: fuzz
fuzz:
	cd pkg && go test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./credverify/
	cd services/issuer && go test -run '^$$' -fuzz FuzzVerify -fuzztime $(FUZZTIME) ./internal/signing/

.PHONY: clean
clean:
	rm -rf bin .jitid

## spire: install spire-server and spire-agent (tools/spire, SPIRE v1.13.3) into .bin/ for the SPIRE integration test in pkg/mtls (cold: 25 CPU-minutes, 69 minutes on a busy 2-core machine)
SPIRE_BINS := $(GOBIN_DIR)/spire-server $(GOBIN_DIR)/spire-agent
.PHONY: spire
spire: $(SPIRE_BINS)
# tools/spire is a module of its own, outside go.work, so that SPIRE's many
# dependencies never enter the services' build list.
$(SPIRE_BINS) &: tools/spire/go.mod tools/spire/go.sum
	cd tools/spire && GOWORK=off GOBIN=$(GOBIN_DIR) go install github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
	touch $(SPIRE_BINS)
