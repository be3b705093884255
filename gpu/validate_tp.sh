#!/usr/bin/env bash
# Validates profilemate-bpf on one server with tensor parallelism 2 (two GPUs):
# `gpu/workload.py --tp 2` runs an engine (VLLM::EngineCore) and two workers
# (VLLM::Worker_TP0, VLLM::Worker_TP1, NCCL all_reduces in every layer), and the
# tracer is given only the engine's pid. Run as root on the 2-GPU machine:
#     bash gpu/validate_tp.sh
#
# (a) installs the marker as validate.sh does;
# (b) runs, one after the other:
#     graph  CUDA graphs for decode; tracer windows of WINDOW s alternating with
#            untraced ones, ROUNDS of each;
#     eager  --eager, EAGER_WINDOW-second windows, EAGER_ROUNDS of each;
#     prof   --eager under the PyTorch profiler (each rank its own), PROF_STEPS steps;
# (c) gpu/report.py prints one table per rank (launch coverage, duration accuracy,
#     overhead) and one across the ranks (the tracer's _ranks spread, attach time).
# Env: OUT (if set, the only files written there: validate.log, table.txt,
# report.json, runs.tar.gz), DATA (all results; default
# /tmp/profilemate-tp-validate), PROFILEMATE_BIN (bin/profilemate-bpf), PYTHON,
# WINDOW (15), ROUNDS (2), EAGER_WINDOW (8), EAGER_ROUNDS (2), PROF_STEPS (100),
# WORKLOAD_ARGS, VALIDATE_DEVICE=cpu (smoke test: tiny model, gloo, no GPU).
# About 4-6 minutes.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
DATA=${DATA:-/tmp/profilemate-tp-validate}
BIN=${PROFILEMATE_BIN:-$REPO/bin/profilemate-bpf}
PY=${PYTHON:-python3}
WINDOW=${WINDOW:-15}
ROUNDS=${ROUNDS:-2}
EAGER_WINDOW=${EAGER_WINDOW:-8}
EAGER_ROUNDS=${EAGER_ROUNDS:-2}
PROF_STEPS=${PROF_STEPS:-100}
WORKLOAD_ARGS=${WORKLOAD_ARGS:-}
mkdir -p "$DATA"
# Only what this script writes: a stale run must not enter the report.
for r in graph eager prof; do rm -rf "${DATA:?}/$r"; done
rm -f "$DATA/table.txt" "$DATA/report.json"
LOG=$DATA/validate.log
: >"$LOG"
say() { echo "[validate-tp $(date +%T)] $*" | tee -a "$LOG" >&2; }
export PYTHONUNBUFFERED=1
export PYTHONPATH=$REPO/simserver${PYTHONPATH:+:$PYTHONPATH}
# Never NVLink multicast (the workload sets these too).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

. "$REPO/gpu/copy_out.sh"
trap 'copy_out "$DATA" graph eager prof' EXIT

[ "$(id -u)" = 0 ] || say "warning: not root; the tracer will likely fail"
[ -x "$BIN" ] || { say "no tracer binary at $BIN (set PROFILEMATE_BIN)"; exit 2; }
if [ "${VALIDATE_DEVICE:-cuda}" = cpu ]; then
    WORKLOAD_ARGS="--device cpu --dtype float32 --layers 2 --hidden 128 --intermediate 256 --heads 4 --vocab 1000 $WORKLOAD_ARGS"
else
    $PY -c 'import torch, transformers; assert torch.cuda.device_count() >= 2, torch.cuda.device_count()' \
        2>>"$LOG" || { say "python needs torch with CUDA (2 GPUs) and transformers"; exit 2; }
    nvidia-smi -L 2>/dev/null | tee -a "$LOG" >&2
fi
$PY -c 'import setproctitle' 2>/dev/null \
    && say "setproctitle: installed" \
    || say "setproctitle: missing; the workload overwrites its argv area for the titles"

# --- (a) the marker (as validate.sh) -------------------------------------------------
. "$REPO/gpu/install_marker.sh"

# --- (b) the runs ----------------------------------------------------------------------
WPID=
WORKERS=
wait_ready() { # LOGFILE PID
    local i
    for i in $(seq 1 480); do
        grep -q '^WORKLOAD_READY' "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

stop_workload() { # kill the engine and its workers (by pid) after a hang
    kill "$WPID" 2>/dev/null
    sleep 5
    local p
    for p in $WPID ${WORKERS//,/ }; do kill -9 "$p" 2>/dev/null; done
    wait "$WPID" 2>/dev/null
}

wait_workload() { # SECONDS: wait for the engine to exit, at most SECONDS
    local i
    for i in $(seq 1 $((2 * $1))); do
        kill -0 "$WPID" 2>/dev/null || { wait "$WPID"; return $?; }
        sleep 0.5
    done
    say "workload (engine pid $WPID) still running after $1 s more; stopping it"
    stop_workload
    return 1
}

start_workload() { # DIR ARGS...
    local dir=$1; shift
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    $PY gpu/workload.py --tp 2 "$@" --truth "$dir/truth.csv" $WORKLOAD_ARGS >"$dir/workload.log" 2>&1 &
    WPID=$!
    if ! wait_ready "$dir/workload.log" "$WPID"; then
        say "workload in $dir did not get ready; tail of its log:"
        tail -30 "$dir/workload.log" | tee -a "$LOG" >&2
        stop_workload
        return 1
    fi
    local line
    line=$(grep '^WORKLOAD_READY' "$dir/workload.log")
    WORKERS=$(sed -n 's/.* workers=\([0-9,]*\).*/\1/p' <<<"$line")
    say "$line"
    local p
    for p in $WPID ${WORKERS//,/ }; do
        say "  pid $p: /proc/$p/cmdline = '$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | sed 's/ *$//')'"
    done
    grep -h 'graph capture failed' "$dir/workload.log" | head -4 | tee -a "$LOG" >&2
}

alternating() { # NAME WINDOW ROUNDS WORKLOAD-ARGS...
    local name=$1 window=$2 rounds=$3; shift 3
    local dir=$DATA/$name i
    local seconds=$((2 * rounds * window + 2 * rounds))
    start_workload "$dir" "$@" --duration "$seconds" --wait-traced 30 || return 1
    for i in $(seq 1 "$rounds"); do
        "$BIN" --pid "$WPID" --duration "${window}s" --out "$dir/trace$i" --launches=all >"$dir/trace$i.log" 2>&1 \
            || say "tracer window $i of $name exited with $? (see $dir/trace$i.log)"
        grep -h 'probes attached' "$dir/trace$i.log" | sed "s/^ */[$name $i] /" | tee -a "$LOG" >&2
        kill -0 "$WPID" 2>/dev/null || break
        sleep "$window"
    done
    wait_workload 120
    say "$name: $(grep '^WORKLOAD_RESULT' "$dir/workload.log" | cut -c1-400)"
}

T0=$(date +%s)
alternating graph "$WINDOW" "$ROUNDS"
alternating eager "$EAGER_WINDOW" "$EAGER_ROUNDS" --eager
dir=$DATA/prof
if start_workload "$dir" --eager --torch-profiler --sync-debug --steps "$PROF_STEPS" --duration 120 \
        --profile-out "$dir/counts.csv"; then
    wait_workload 240
    say "prof: $(grep '^WORKLOAD_RESULT' "$dir/workload.log" | cut -c1-400)"
fi
say "runs took $(($(date +%s) - T0)) s"

# --- (c) the tables ----------------------------------------------------------------------
$PY gpu/report.py "$DATA" | tee -a "$LOG"
say "marker: $MARKER; everything in $DATA${OUT:+ (and validate.log, table.txt, report.json, runs.tar.gz in $OUT)}"
