#!/usr/bin/env bash
# make demo: start the simulated vLLM server (two workers, one per model
# runner), trace its API server for a few seconds, print the summary and where
# the files are (the CSV, summary.json, timeline.json, the plots and
# report.html), then stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
truth=$(mktemp -d)
simserver/serve --workers 2 --runner mixed --duration 60 --truth-dir "$truth" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$truth"' EXIT
for _ in $(seq 300); do [ -e "$truth/server.json" ] && break; sleep 0.1; done
[ -e "$truth/server.json" ] || { echo "demo: the simulated server did not start" >&2; exit 1; }
echo "demo: simulated vLLM server running, API server pid $server"
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo bin/profilemate-bpf --pid "$server" --duration "${DEMO_DURATION:-5s}"
