#!/usr/bin/env bash
# make container-test: build the container image with podman and trace the
# simulated vLLM server on the host from inside it, with the least privileges
# that work. As root on Debian 12; installs podman and debootstrap if missing.
#
# No image registry is needed: the Dockerfile's base, debian:bookworm, is made
# here with debootstrap and `podman import` (once; kept in podman's storage;
# CONTAINER_REBUILD_BASE=1 makes it again). The build itself fetches Debian
# packages and the Go toolchain and modules from the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

# Podman's default seccomp profile (containers-common) allows bpf() and
# perf_event_open() only to containers with CAP_SYS_ADMIN. This prints it with
# those two allowed for CAP_BPF and CAP_PERFMON instead, nothing else changed:
#   scripts/container-test.sh --seccomp-profile > profilemate-seccomp.json
seccomp_profile() {
	python3 - "${1:-/usr/share/containers/seccomp.json}" <<'PY'
import json, sys
profile = json.load(open(sys.argv[1]))
rules = []
for rule in profile["syscalls"]:
    if rule["action"] != "SCMP_ACT_ALLOW" and rule.get("excludes", {}).get("caps") == ["CAP_SYS_ADMIN"]:
        rule["names"] = [n for n in rule["names"] if n not in ("bpf", "perf_event_open")]
    if rule["names"]:
        rules.append(rule)
rules.append({"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_BPF"]}})
rules.append({"names": ["perf_event_open"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_PERFMON"]}})
profile["syscalls"] = rules
json.dump(profile, sys.stdout, indent=1)
PY
}
if [ "${1:-}" = --seccomp-profile ]; then seccomp_profile; exit; fi

IMAGE=${IMAGE:-localhost/profilemate-bpf:test}
BASE=localhost/debian:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TRACE=${TRACE_DURATION:-5s}
start=$SECONDS

fail() { echo "container-test: FAIL: $*" >&2; exit 1; }
step() { echo "container-test: [$((SECONDS - start))s] $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (podman rootful: the tracer needs the host's PID namespace and CAP_BPF)"

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
	step "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || fail "apt-get install ${need[*]}"
fi

# runc rather than Debian's default crun: crun refuses hybrid cgroup hosts
# (cgroup v1 with a controller on the v2 hierarchy, as on this CI's VMs).
# Podman raises a root container's nofile/nproc limits, which fails where root
# lacks CAP_SYS_RESOURCE (these VMs): then keep the host's nofile and an
# nproc of at most 32768 (higher values were refused here, below the host's).
PODMAN=(podman --runtime runc)

# The base image, from Debian's mirror.
if [ "${CONTAINER_REBUILD_BASE:-0}" != 1 ] && podman image exists "$BASE"; then
	step "base image $BASE exists"
else
	step "making base image $BASE with debootstrap"
	root=$(mktemp -d /var/tmp/bookworm.XXXXXX)
	trap 'rm -rf "$root"' EXIT
	debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$MIRROR" >"$root.log" 2>&1 \
		|| { tail -20 "$root.log" >&2; fail "debootstrap (log: $root.log)"; }
	rm -f "$root.log"
	cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
	# Trust what the host trusts: where HTTPS goes through an intercepting
	# proxy (as here), its CA is in the host's bundle and the build's
	# downloads from the Go module proxy need it.
	cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/host-bundle.crt"
	chroot "$root" update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates in the base image"
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
	tar -C "$root" --numeric-owner -cf - . \
		| podman import -q --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null \
		|| fail "podman import $BASE"
	rm -rf "$root"; trap - EXIT
fi

LIMITS=()
if ! "${PODMAN[@]}" run --rm --network none "$BASE" true >/dev/null 2>&1; then
	nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
	LIMITS=(--ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")
fi

step "building $IMAGE"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
"${PODMAN[@]}" build "${LIMITS[@]}" --build-arg COMMIT="$commit" -t "$IMAGE" . \
	|| fail "podman build"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
step "image $IMAGE: $((size / 1024 / 1024)) MiB"

# The simulated server on the host, as a real one would run.
step "building and starting the simulated vLLM server on the host"
make -s sim >/dev/null || fail "make sim"
work=$(mktemp -d /var/tmp/container-test.XXXXXX)
server=""
cleanup() {
	[ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/truth" "$work/out"
simserver/serve --workers 1 --duration 120 --truth-dir "$work/truth" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 300); do [ -e "$work/truth/server.json" ] && break; kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
[ -e "$work/truth/server.json" ] || { cat "$work/server.log" >&2; fail "the simulated server did not start"; }
seccomp_profile >"$work/seccomp.json" || fail "making the seccomp profile"

# The least privileges that work (each was tried without): the host's PID
# namespace (the tracer finds the server through /proc and the kernel reports
# host PIDs), CAP_BPF, CAP_PERFMON (uprobes), CAP_SYS_PTRACE (the server's
# /proc/PID/maps and /proc/PID/root belong to another process with more
# capabilities), and bpf()/perf_event_open() let through seccomp. No other
# capability, no network, a read-only root, no /sys mount (the container's
# sysfs has /sys/kernel/btf), no memlock rlimit (Linux >= 5.11 charges eBPF
# memory to the cgroup).
run=("${PODMAN[@]}" run --rm "${LIMITS[@]}"
	--pid=host --cap-drop=all --cap-add=BPF --cap-add=PERFMON --cap-add=SYS_PTRACE
	--security-opt "seccomp=$work/seccomp.json" --security-opt no-new-privileges
	--network=none --read-only)

step "check --pid $server in the container"
"${run[@]}" "$IMAGE" check --pid "$server" || fail "profilemate-bpf check --pid $server exited $?"

step "tracing the simulated server for $TRACE from the container"
"${run[@]}" -v "$work/out:/out" "$IMAGE" --pid "$server" --duration "$TRACE" --out /out \
	|| fail "profilemate-bpf --pid $server exited $?"

csv=$work/out/forward_pass_timing.csv
[ -s "$csv" ] || fail "no $csv"
rows=$(($(wc -l <"$csv") - 1))
[ "$rows" -gt 0 ] || fail "$csv has no rows"
[ -s "$work/out/summary.json" ] || fail "no summary.json"
# The image is FROM scratch: the plots must draw with the fonts the binary
# embeds, nothing from a system.
for f in timeline.json report.html plot_step_duration.png; do
	[ -s "$work/out/$f" ] || fail "no $f"
done
kill -0 "$server" 2>/dev/null || fail "the simulated server is gone after the trace"
step "OK: $rows forward passes in the CSV, the server still runs"
