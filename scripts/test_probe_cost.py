"""probe-cost.py's "semaphores" config: the marker's semaphores set and
cleared by hand in a live process that loaded the marker's library."""
import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("probe_cost", os.path.join(HERE, "probe-cost.py"))
probe_cost = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe_cost)

# Loads the in-place marker build and prints its semaphores, in
# native.PROBE_NAMES' order, for every line it reads.
CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from profilemate_marker import native
p = native.Probes(native.find_library())
print(" ".join(native.PROBE_NAMES), flush=True)
for _ in sys.stdin:
    print(" ".join(str(getattr(p, n + "_semaphore").value) for n in native.PROBE_NAMES), flush=True)
"""


def test_semaphores_are_set_and_cleared_in_a_process_with_the_marker():
    if os.geteuid() != 0:
        pytest.skip("writing another process's memory needs root; CI runs as root")
    child = subprocess.Popen([sys.executable, "-c", CHILD, os.path.join(HERE, "..", "marker")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        names = child.stdout.readline().split()
        assert names, "the child could not load the marker's library (make marker)"

        def read():
            child.stdin.write("\n")
            child.stdin.flush()
            return dict(zip(names, map(int, child.stdout.readline().split())))

        assert probe_cost.marker_semaphores(child.pid, 1) == [child.pid]
        values = read()
        assert {n for n, v in values.items() if v} == set(probe_cost.TRACED_PROBES)
        assert all(v in (0, 1) for v in values.values())
        probe_cost.marker_semaphores(child.pid, 0)
        assert not any(read().values())
    finally:
        child.kill()
        child.wait()


def test_a_process_without_the_marker_is_left_alone():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert probe_cost.marker_semaphores(sleeper.pid, 1) == []
    finally:
        sleeper.kill()
        sleeper.wait()
