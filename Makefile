# jitid — make targets. Every Go command runs over the go.work modules,
# since `./...` at a workspace root finds nothing.

SHELL := /bin/bash
export PATH := $(CURDIR)/.bin:$(PATH)
GOBIN_DIR := $(CURDIR)/.bin

BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
GRPCURL_VERSION := v1.9.3
NATSCLI_VERSION := v0.5.0

MODULE_DIRS = $(shell go list -m -f '{{.Dir}}')
MODULE_PKGS = $(shell go list -m -f '{{.Dir}}/...')
BINARIES := issuer policy audit jitid-dev

.PHONY: all
all: build test

## tools: install buf and the protoc plugins at pinned versions into .bin/
.PHONY: tools
tools: $(GOBIN_DIR)/buf $(GOBIN_DIR)/protoc-gen-go $(GOBIN_DIR)/protoc-gen-go-grpc

$(GOBIN_DIR)/buf:
	GOBIN=$(GOBIN_DIR) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(GOBIN_DIR)/protoc-gen-go:
	GOBIN=$(GOBIN_DIR) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(GOBIN_DIR)/protoc-gen-go-grpc:
	GOBIN=$(GOBIN_DIR) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

## clients: install grpcurl and the nats CLI (what operators use)
.PHONY: clients
clients:
	GOBIN=$(GOBIN_DIR) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	GOBIN=$(GOBIN_DIR) go install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

## generate: regenerate Go code from proto/ (committed)
.PHONY: generate
generate: tools
	buf format -w
	buf generate

## checkgenerate: fail when generated code or proto formatting is stale
.PHONY: checkgenerate
checkgenerate: generate
	@if [ -n "$$(git status --porcelain -- proto buf.yaml buf.gen.yaml)" ]; then \
		git status --porcelain -- proto; git diff -- proto | head -50; \
		echo "generated code is stale: run 'make generate' and commit the result"; exit 1; fi

## lint: go vet per module, buf lint and buf format
.PHONY: lint
lint: tools
	buf lint
	buf format -d --exit-code
	go vet $(MODULE_PKGS)

## check-test-deps: say in one line what to install when a test server is missing
.PHONY: check-test-deps
check-test-deps:
	@if [ -z "$$JITID_TEST_REDIS_ADDR" ] && ! command -v redis-server >/dev/null; then \
		echo "make test needs redis-server on PATH (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or JITID_TEST_REDIS_ADDR=host:port"; exit 1; fi

## test: every test of every module, with the race detector
.PHONY: test
test: check-test-deps checkgenerate
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
