# profilemate-bpf container image.
#
#   podman build -t profilemate-bpf .        (or docker build)
#
# Build stage: Debian 12 with clang/llvm/libbpf-dev regenerates the eBPF
# objects from bpf/ and checks them against the committed ones, then the
# Makefile builds the static binary. Final stage: the binary alone.
#
# Needs, at build time only, an image named debian:bookworm (Docker Hub's, or
# the one scripts/container-test.sh makes with debootstrap + podman import)
# whose apt sources reach a Debian mirror, and a Go module proxy (for the Go
# toolchain named in go.mod and the modules), passed in as the builder has it:
#
#   --build-arg GOPROXY="$(go env GOPROXY)" [--build-arg GOSUMDB="$(go env GOSUMDB)"]

FROM debian:bookworm AS build

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      clang llvm libbpf-dev linux-libc-dev make ca-certificates curl unzip >/dev/null \
 && rm -rf /var/lib/apt/lists/*

# The Go toolchain that go.mod names, from the Go module proxy (Debian's
# golang-go is too old), checked against a pinned digest. Bump both with go.mod.
ARG GO_VERSION=1.26.8
ARG GO_SHA256=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
# No default: the proxy is the builder's (go env GOPROXY); its first URL
# serves the toolchain.
ARG GOPROXY
ARG GOSUMDB
RUN proxy=$(echo "${GOPROXY}" | tr ',|' '\n\n' | grep -m1 -E '^https?://') \
 || { echo "no Go module proxy URL in GOPROXY='${GOPROXY}': build with --build-arg GOPROXY=\"\$(go env GOPROXY)\"" >&2; exit 1; } \
 && curl -sSfLo /tmp/go.zip "${proxy%/}/golang.org/toolchain/@v/v0.0.1-go${GO_VERSION}.linux-amd64.zip" \
 && echo "${GO_SHA256}  /tmp/go.zip" | sha256sum -c - \
 && unzip -q /tmp/go.zip -d /tmp/go \
 && mv "/tmp/go/golang.org/toolchain@v0.0.1-go${GO_VERSION}.linux-amd64" /usr/local/go \
 && chmod -R a+rX /usr/local/go && chmod a+x /usr/local/go/bin/* /usr/local/go/pkg/tool/linux_amd64/* \
 && rm -rf /tmp/go /tmp/go.zip
ENV PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOPROXY=${GOPROXY} GOSUMDB=${GOSUMDB}

WORKDIR /src
# Modules in their own layer: only a go.mod/go.sum change downloads again.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# The image carries no .git: the commit comes in as a build argument, and the
# committed eBPF objects are kept aside to check the regenerated ones (what
# `make generate-check` does with git).
# The go build cache persists between builds on one machine (a cache mount).
ARG COMMIT=unknown
RUN --mount=type=cache,target=/root/.cache/go-build \
    mkdir /tmp/committed && cp tracer/profilemate_x86_bpfel.go tracer/profilemate_x86_bpfel.o /tmp/committed/ \
 && make generate \
 && for f in profilemate_x86_bpfel.go profilemate_x86_bpfel.o; do \
      cmp "/tmp/committed/$f" "tracer/$f" || { echo "tracer/$f differs from what bpf/ produces: run make generate and commit" >&2; exit 1; }; \
    done \
 && make build COMMIT="${COMMIT}" \
 && ./bin/profilemate-bpf --version

# Final image: the static binary and nothing else. It writes only where --out
# points (bind-mount a host directory there).
FROM scratch
COPY --from=build /src/bin/profilemate-bpf /profilemate-bpf
ENTRYPOINT ["/profilemate-bpf"]
CMD ["--help"]
