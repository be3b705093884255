#!/usr/bin/env bash
# scripts/under-load.sh RUNS COMMAND...: run COMMAND RUNS times while every
# core is kept busy by spinning loops (SPINNERS of them, default one per
# core, at normal priority), as a CI machine shared with other jobs is, and
# print how many runs passed. The timing-sensitive tests must pass here as
# they do on an idle machine:
#
#   scripts/under-load.sh 5 make test-python
#   scripts/under-load.sh 3 go test -p 1 -count=1 ./...
#   SPINNERS=4 scripts/under-load.sh 3 taskset -c 0 make test-python   # harsher
set -uo pipefail
runs=${1:?usage: $0 RUNS COMMAND...}
shift
[ $# -gt 0 ] || { echo "usage: $0 RUNS COMMAND..." >&2; exit 2; }

spinners=()
stop() { for p in "${spinners[@]}"; do kill "$p" 2>/dev/null; done; }
trap stop EXIT
for _ in $(seq "${SPINNERS:-$(nproc)}"); do
	bash -c 'while :; do :; done' &
	spinners+=($!)
done

passed=0
for i in $(seq "$runs"); do
	start=$SECONDS
	if "$@" >"/tmp/under-load.$$.$i.log" 2>&1; then
		passed=$((passed + 1))
		echo "under-load: run $i/$runs passed ($((SECONDS - start)) s): $(grep -v '^\s*$' "/tmp/under-load.$$.$i.log" | tail -1)"
		rm -f "/tmp/under-load.$$.$i.log"
	else
		echo "under-load: run $i/$runs FAILED ($((SECONDS - start)) s), log: /tmp/under-load.$$.$i.log"
		grep -E 'FAIL|Error|assert|failed' "/tmp/under-load.$$.$i.log" | head -20
	fi
done
echo "under-load: $passed of $runs runs passed with ${#spinners[@]} loops spinning on $(nproc) cores: $*"
[ "$passed" -eq "$runs" ]
