#!/usr/bin/env bash
# scripts/setup.sh demo|test: make sure the Debian packages that `make demo`
# or `make test` need (scripts/debian-packages) are installed. As root it
# installs the missing ones with apt-get; otherwise it stops with one line
# naming the command to run. `make demo` and `make test` run it first.
set -euo pipefail
cd "$(dirname "$0")/.."

scope=${1:-test}
case $scope in demo | test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

command -v go >/dev/null || {
	echo "setup: Go is not on PATH: install Go $(sed -n 's/^go //p' go.mod) or newer first" >&2
	exit 1
}

# Packages of this scope: unmarked ones always, `test` ones for make test.
mapfile -t wanted < <(sed 's/#.*//' scripts/debian-packages |
	awk -v scope="$scope" 'NF && ($2 == "" || $2 == scope) { print $1 }')

if ! command -v dpkg-query >/dev/null; then
	echo "setup: not a Debian system (no dpkg-query): make sure these are installed: ${wanted[*]}" >&2
	exit 0
fi
missing=()
for p in "${wanted[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "setup: missing Debian packages; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
