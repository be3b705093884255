# Sourced by validate.sh and validate_tp.sh (which set PY, REPO, LOG and say):
# installs the marker the way a user would, through its vllm.general_plugins
# entry point, or, where pip cannot build it offline, with PYTHONPATH and its
# sitecustomize.py after `make -C marker`. Sets MARKER to the way taken.
has_entry_point() {
    $PY - <<'PYEOF' 2>>"$LOG"
import sys
from importlib.metadata import entry_points
sys.exit(0 if any(e.name == "profilemate_marker" for e in entry_points(group="vllm.general_plugins")) else 1)
PYEOF
}
if $PY -m pip install --no-build-isolation --no-deps "$REPO/marker" >>"$LOG" 2>&1 && has_entry_point; then
    MARKER="pip install (entry point vllm.general_plugins)"
else
    say "pip install of the marker failed (see $LOG); falling back to PYTHONPATH + sitecustomize"
    make -C "$REPO/marker" >>"$LOG" 2>&1 || { say "make -C marker failed"; exit 2; }
    export PYTHONPATH=$REPO/marker:$PYTHONPATH
    MARKER="PYTHONPATH=marker + sitecustomize.py"
fi
say "marker: $MARKER"
