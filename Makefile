# profilemate-bpf. `make demo` and `make test` do all set-up on a fresh machine
# once .ci/run's packages are installed; see README.md.
SHELL := /bin/bash
BUILD ?= $(CURDIR)/build
PREFIX ?= /usr/local
VERSION ?= 0.1.0
COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN := bin/profilemate-bpf

.PHONY: all build generate generate-check marker sim demo test test-go test-python fuzz bench install container-test clean

all: build marker sim

# A static binary: it runs on any Linux host and in a minimal container image.
# Always run: go's own cache makes it cheap, and the version stamp stays true.
build:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/profilemate-bpf

# Regenerate the eBPF objects (needs clang and libbpf-dev). The outputs are
# committed so that `go build` needs neither.
generate:
	go generate ./tracer

# CI: the committed objects must be what the sources produce.
generate-check: generate
	git diff --exit-code -- tracer/profilemate_x86_bpfel.go tracer/profilemate_x86_bpfel.o

marker:
	$(MAKE) -C marker

sim:
	$(MAKE) -C simserver BUILD=$(BUILD)

# The main job against the simulated server: start it, trace its API server
# for a few seconds, print the table, stop it.
demo: build marker sim
	./scripts/demo.sh

test: generate-check build marker sim test-go test-python container-test

test-go:
	go vet ./...
	# One package at a time: the root tests time real servers on 2 cores.
	go test -p 1 -count=1 -timeout 20m ./...

# Separate runs: each suite has its own conftest.py or import path.
test-python: marker sim
	$(BUILD)/venv/bin/python -m pytest -q marker/tests
	$(BUILD)/venv/bin/python -m pytest -q gpu/test_gpu.py gpu/test_vllm_validate.py
	$(MAKE) -C simserver test BUILD=$(BUILD)

fuzz:
	go test ./tracer -run '^$$' -fuzz FuzzParseMaps -fuzztime 30s
	go test ./tracer -run '^$$' -fuzz FuzzReadUSDTProbes -fuzztime 30s
	go test ./tracer -run '^$$' -fuzz FuzzDecodeStep -fuzztime 30s

bench: build sim
	go test -p 1 ./tracer ./cmd/profilemate-bpf -run '^$$' -bench . -benchtime 1x -count 1 -v | grep -E 'launch:|launches [a-z]+:|^ok|FAIL'

install: build marker
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/profilemate-bpf
	mkdir -p $(DESTDIR)$(PREFIX)/share/profilemate-bpf
	tar -C $(CURDIR) --exclude=build --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache --exclude=tests -cf - marker \
		| tar -C $(DESTDIR)$(PREFIX)/share/profilemate-bpf -xf -
	@echo "installed $(PREFIX)/bin/profilemate-bpf and the marker in $(PREFIX)/share/profilemate-bpf/marker"

clean:
	rm -rf bin $(BUILD)
	$(MAKE) -C marker clean

# Build the container image with podman (as root) and trace the simulated
# server from inside it; see README.md, "Container".
container-test:
	./scripts/container-test.sh
