#!/usr/bin/env bash
# Validates profilemate-bpf on a real GPU against gpu/workload.py.
# Run as root from anywhere on the GPU machine:   bash gpu/validate.sh
#
# (a) installs the marker (pip, or PYTHONPATH=marker + sitecustomize after
#     `make -C marker` when pip cannot);
# (b) runs, one after the other (never two on the GPU at once):
#     graph  CUDA graphs for decode, tracer attached in WINDOW-second windows
#            alternating with untraced windows (ROUNDS of each);
#     eager  the same with --eager (every kernel launched);
#     eager-nolaunch  the same, the tracer run with --launches=false;
#     prof   --eager under the PyTorch profiler, PROF_STEPS steps (kernels/step);
#     prof-graph  graph mode under the PyTorch profiler, PROF_STEPS steps;
#     sync   graph mode with --sync-every-step, SYNC_SECONDS of stepping;
#     sync-eager  the same with --eager;
# (c) gpu/report.py compares and prints one table.
# Env: OUT (results; default /tmp/profilemate-gpu-validate), PROFILEMATE_BIN
# (default bin/profilemate-bpf), PYTHON (python3), WINDOW (10), ROUNDS (3),
# PROF_STEPS (150), SYNC_SECONDS (15),
# RUNS (which of "graph eager eager-nolaunch prof prof-graph sync sync-eager"),
# WORKLOAD_ARGS (extra workload flags, e.g. a larger model), TRACER_FLAGS
# (extra tracer flags, e.g. --launches=false),
# VALIDATE_DEVICE=cpu (smoke test of the script itself with a tiny CPU model).
# About 7 minutes in all. With OUT set, only validate.log, table.txt,
# report.json and runs.tar.gz go there; everything is in DATA
# (default /tmp/profilemate-gpu-validate).
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUTDIR=${DATA:-/tmp/profilemate-gpu-validate}
BIN=${PROFILEMATE_BIN:-$REPO/bin/profilemate-bpf}
PY=${PYTHON:-python3}
WINDOW=${WINDOW:-10}
ROUNDS=${ROUNDS:-3}
PROF_STEPS=${PROF_STEPS:-150}
SYNC_SECONDS=${SYNC_SECONDS:-15}
ALL_RUNS="graph eager eager-nolaunch prof prof-graph sync sync-eager"
RUNS=${RUNS:-$ALL_RUNS}
WORKLOAD_ARGS=${WORKLOAD_ARGS:-}
mkdir -p "$OUTDIR"
# Only what this script writes: a stale run must not enter the report.
for r in $ALL_RUNS; do rm -rf "${OUTDIR:?}/$r"; done
rm -f "$OUTDIR/table.txt" "$OUTDIR/report.json"
LOG=$OUTDIR/validate.log
: >"$LOG"
say() { echo "[validate $(date +%T)] $*" | tee -a "$LOG" >&2; }
. "$REPO/gpu/copy_out.sh"
# shellcheck disable=SC2086
trap 'copy_out "$OUTDIR" $ALL_RUNS' EXIT
export PYTHONUNBUFFERED=1
export PYTHONPATH=$REPO/simserver${PYTHONPATH:+:$PYTHONPATH}

[ "$(id -u)" = 0 ] || say "warning: not root; the tracer will likely fail"
[ -x "$BIN" ] || { say "no tracer binary at $BIN (set PROFILEMATE_BIN)"; exit 2; }
if [ "${VALIDATE_DEVICE:-cuda}" = cpu ]; then
    # Smoke test of this script without a GPU: a tiny model on the CPU.
    WORKLOAD_ARGS="--device cpu --dtype float32 --layers 2 --hidden 128 --intermediate 256 --heads 4 --vocab 1000 $WORKLOAD_ARGS"
else
    $PY -c 'import torch, transformers; assert torch.cuda.is_available()' 2>>"$LOG" \
        || { say "python needs torch with CUDA and transformers"; exit 2; }
fi

# --- (a) the marker --------------------------------------------------------------
. "$REPO/gpu/install_marker.sh"

# --- (b) the runs ----------------------------------------------------------------
wait_ready() { # LOGFILE PID: wait for WORKLOAD_READY while PID lives
    local i
    for i in $(seq 1 600); do
        grep -q '^WORKLOAD_READY' "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

start_workload() { # DIR ARGS...: starts the workload in the background, sets WPID
    local dir=$1; shift
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    $PY gpu/workload.py "$@" --truth "$dir/truth.csv" $WORKLOAD_ARGS >"$dir/workload.log" 2>&1 &
    WPID=$!
    if ! wait_ready "$dir/workload.log" "$WPID"; then
        say "workload in $dir did not get ready; tail of its log:"
        tail -20 "$dir/workload.log" | tee -a "$LOG" >&2
        kill "$WPID" 2>/dev/null
        wait "$WPID" 2>/dev/null
        return 1
    fi
    say "$(grep '^WORKLOAD_READY' "$dir/workload.log")"
}

# Tracer flags of the alternating runs (the eager-nolaunch run sets its own):
# every launch counted, since the report compares each step's count with the
# profiler's (the tracer samples launches by default).
TRACER_FLAGS=${TRACER_FLAGS:---launches=all}
alternating() { # NAME WORKLOAD-ARGS...: tracer windows alternating with plain ones
    local name=$1; shift
    local dir=$OUTDIR/$name i
    local seconds=$((2 * ROUNDS * WINDOW + 2 * ROUNDS))
    start_workload "$dir" "$@" --duration "$seconds" --wait-traced 30 || return 1
    for i in $(seq 1 "$ROUNDS"); do
        # shellcheck disable=SC2086
        "$BIN" --pid "$WPID" --duration "${WINDOW}s" --out "$dir/trace$i" $TRACER_FLAGS >"$dir/trace$i.log" 2>&1 \
            || say "tracer window $i of $name exited with $? (see $dir/trace$i.log)"
        grep -h 'probes attached' "$dir/trace$i.log" | sed "s/^ */[$name $i] /" | tee -a "$LOG" >&2
        kill -0 "$WPID" 2>/dev/null || break
        sleep "$WINDOW"
    done
    wait "$WPID"
    say "$name: $(grep '^WORKLOAD_RESULT' "$dir/workload.log")"
}

plain() { # NAME WORKLOAD-ARGS...: one untraced run
    local name=$1; shift
    local dir=$OUTDIR/$name
    start_workload "$dir" "$@" || return 1
    wait "$WPID"
    say "$name: $(grep '^WORKLOAD_RESULT' "$dir/workload.log")"
    # --sync-debug names the first synchronizing op of a step, if any.
    grep -h 'synchronizing op in a step' "$dir/workload.log" | head -1 | tee -a "$LOG" >&2
}

wanted() { case " $RUNS " in *" $1 "*) return 0 ;; esac; return 1; }
T0=$(date +%s)
wanted graph && alternating graph
wanted eager && alternating eager --eager
wanted eager-nolaunch && TRACER_FLAGS=--launches=false alternating eager-nolaunch --eager
wanted prof && plain prof --eager --torch-profiler --sync-debug --steps "$PROF_STEPS" --duration 120 \
    --profile-out "$OUTDIR/prof/counts.csv"
wanted prof-graph && plain prof-graph --torch-profiler --steps "$PROF_STEPS" --duration 120
wanted sync && plain sync --sync-every-step --duration "$SYNC_SECONDS"
wanted sync-eager && plain sync-eager --eager --sync-every-step --duration "$SYNC_SECONDS"
say "runs took $(($(date +%s) - T0)) s"

# --- (c) the table -----------------------------------------------------------------
$PY gpu/report.py "$OUTDIR" | tee -a "$LOG"
say "marker: $MARKER; logs, CSVs, report.json and table.txt in $OUTDIR${OUT:+ (and validate.log, table.txt, report.json, runs.tar.gz in $OUT)}"
