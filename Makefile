# profilemate-bpf. `make demo` and `make test` do all set-up on a fresh Debian
# machine with Go: run as root, they first install the Debian packages missing
# from scripts/debian-packages (scripts/setup.sh); see README.md.
SHELL := /bin/bash
BUILD ?= $(CURDIR)/build
PREFIX ?= /usr/local
VERSION ?= 0.1.0
COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN := bin/profilemate-bpf

.PHONY: all setup setup-demo build generate generate-check marker sim demo test test-go test-python fuzz bench install container-test clean

all: build marker sim

# The Debian packages of scripts/debian-packages: installed where missing when
# run as root, else one line names the command. demo needs fewer than test.
setup:
	@scripts/setup.sh test
setup-demo:
	@scripts/setup.sh demo

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
# Set-up first, then the rest: a recursive make keeps that order under -j.
demo: setup-demo
	$(MAKE) build marker sim
	./scripts/demo.sh

test: setup
	$(MAKE) generate-check build marker sim test-go test-python container-test

test-go:
	go vet ./...
	# One package at a time: the root tests time real servers on 2 cores.
	go test -p 1 -count=1 -timeout 20m ./...

# Separate runs: each suite has its own conftest.py or import path.
test-python: marker sim
	$(BUILD)/venv/bin/python -m pytest -q marker/tests
	$(BUILD)/venv/bin/python -m pytest -q gpu/test_gpu.py gpu/test_vllm_validate.py scripts/test_probe_cost.py gpu/test_hitcost.py
	$(MAKE) -C simserver test BUILD=$(BUILD)

fuzz:
	go test ./tracer -run '^$$' -fuzz FuzzParseMaps -fuzztime 30s
	go test ./tracer -run '^$$' -fuzz FuzzReadUSDTProbes -fuzztime 30s
	go test ./tracer -run '^$$' -fuzz FuzzDecodeStep -fuzztime 30s
	go test ./tracer -run '^$$' -fuzz FuzzDecodeSched -fuzztime 30s

bench: build sim
	go test -p 1 ./tracer ./cmd/profilemate-bpf -run '^$$' -bench . -benchtime 1x -count 1 -v | grep -E 'cold hits|launch:|launches [a-z]+, syncs [a-z]+:|per probed call|as the tracer does|us per (step|scheduler step)|^ok|FAIL'

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
