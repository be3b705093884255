#!/usr/bin/env bash
# make container-test: build the container image with podman and trace the
# simulated vLLM server on the host from inside it, with the least privileges
# that work. As root on Debian 12; installs podman and debootstrap if missing.
#
# No image registry is needed: the Dockerfile's base, debian:bookworm, is made
# here with debootstrap and `podman import` (once; kept in podman's storage;
# CONTAINER_REBUILD_BASE=1 makes it again). The build itself fetches Debian
# packages and the Go toolchain and modules from the Go module proxy.
#
# Which mirror and which proxy is the builder's own configuration, never
# written here: Debian's from the host's apt sources (DEBIAN_MIRROR and
# DEBIAN_SECURITY_MIRROR override them), the Go module proxy from
# `go env GOPROXY` (and GOSUMDB), passed to the build as arguments.
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
SUITE=bookworm
TRACE=${TRACE_DURATION:-5s}
start=$SECONDS

fail() { echo "container-test: FAIL: $*" >&2; exit 1; }
step() { echo "container-test: [$((SECONDS - start))s] $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (podman rootful: the tracer needs the host's PID namespace and CAP_BPF)"

scripts/setup.sh test || fail "scripts/setup.sh test (podman, runc, debootstrap)"

# apt_uri SUITE: the first URI the host's apt sources give for SUITE, in the
# one-line format (sources.list, *.list) or deb822 (*.sources).
apt_uri() {
	local suite=$1 f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v s="$suite" '$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
			if ($(i + 1) == s) { print $i; exit }
		}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
		{
			types = uris = suites = ""; enabled = "yes"
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^#/ || !match($i, /^[A-Za-z-]+:/)) continue
				key = tolower(substr($i, 1, RLENGTH - 1)); val = substr($i, RLENGTH + 1)
				gsub(/^[ \t]+|[ \t]+$/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = tolower(val)
			}
			if (enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " s " ")) {
				split(uris, u, " "); print u[1]; exit
			}
		}' "$f"
	done | head -1
}
MIRROR=${DEBIAN_MIRROR:-$(apt_uri "$SUITE")}
SECURITY=${DEBIAN_SECURITY_MIRROR:-$(apt_uri "$SUITE-security")}
[ -n "$MIRROR" ] || fail "no Debian mirror for $SUITE in the host's apt sources (/etc/apt/sources.list*): set DEBIAN_MIRROR=URL"
[ -n "$SECURITY" ] || fail "no Debian security mirror for $SUITE-security in the host's apt sources (/etc/apt/sources.list*): set DEBIAN_SECURITY_MIRROR=URL"
GOPROXY=${GOPROXY:-$(go env GOPROXY 2>/dev/null || true)}
GOSUMDB=${GOSUMDB:-$(go env GOSUMDB 2>/dev/null || true)}
case ",$GOPROXY," in
*,http://* | *,https://* | *"|http"*) ;;
*) fail "no Go module proxy URL in GOPROXY=${GOPROXY:-(unset)} (go env GOPROXY): the image build fetches the Go toolchain from one; set GOPROXY=URL" ;;
esac
step "Debian mirror $MIRROR, security $SECURITY; GOPROXY=$GOPROXY"

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
	debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 \
		|| { tail -20 "$root.log" >&2; fail "debootstrap (log: $root.log)"; }
	rm -f "$root.log"
	cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
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
"${PODMAN[@]}" build "${LIMITS[@]}" --build-arg COMMIT="$commit" \
	--build-arg GOPROXY="$GOPROXY" --build-arg GOSUMDB="$GOSUMDB" -t "$IMAGE" . \
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
