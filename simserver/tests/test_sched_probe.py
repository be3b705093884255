"""The marker's scheduler probe on the simulated server, read by a real
USDT consumer (bpftrace, as root): every sched_step carries its step's
truth, and its key is the one the step_begin of every rank carried."""
import json
import os
import shutil
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import BUILD, start_serve

from test_sched_truth import read_csv

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="attaching uprobes with bpftrace needs root")

# %ld: bpftrace 0.17's %d prints the low 32 bits, and keys have 63.
PROGRAM = """
BEGIN { printf("READY\\n"); }
usdt:%(lib)s:profilemate:step_begin { printf("B %%d %%d %%ld\\n", pid, arg0, arg5); }
usdt:%(lib)s:profilemate:sched_step {
    printf("S %%d %%ld %%d %%d %%d %%d %%d\\n", pid, arg0, arg1, arg2, arg3, arg4, arg5); }
"""


def marker_library() -> str:
    """The probe library of the marker installed in the venv."""
    found = sorted(BUILD.glob("venv/lib/python3*/site-packages/profilemate_marker/"
                              "libprofilemate_marker*.so"))
    assert found, "the marker is not installed in the venv (make -C simserver venv)"
    return str(found[0])


def interrupt(tracer, timeout=30) -> str:
    """SIGINT bpftrace until it exits (0.17 can miss a single SIGINT); its
    output."""
    deadline = time.monotonic() + timeout
    while True:
        tracer.send_signal(signal.SIGINT)
        try:
            return tracer.communicate(timeout=1)[0]
        except subprocess.TimeoutExpired:
            assert time.monotonic() < deadline, "bpftrace did not exit on SIGINT"


def test_sched_step_matches_the_truth(tmp_path):
    bpftrace = shutil.which("bpftrace")
    assert bpftrace, "bpftrace is not installed (apt-get install bpftrace)"
    tracer = subprocess.Popen([bpftrace, "-B", "line", "-e", PROGRAM % {"lib": marker_library()}],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # bpftrace may warn first (RLIMIT_MEMLOCK) before its BEGIN prints.
        seen = []
        while "READY\n" not in seen:
            seen.append(tracer.stdout.readline())
            assert seen[-1] and len(seen) < 10, seen
        proc = start_serve("--workers", 2, "--spec", "always", "--kv-blocks", 90,
                           "--duration", 2, "--truth-dir", tmp_path)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        time.sleep(0.5)  # let bpftrace drain its buffers
        out = interrupt(tracer)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()

    begins, sched_steps = defaultdict(list), []
    for line in out.splitlines():
        kind, *words = line.split() or [""]
        if kind == "B":
            pid, step, key = map(int, words)
            begins[key].append((pid, step))
        elif kind == "S":
            sched_steps.append(tuple(map(int, words)))
    server = json.loads((tmp_path / "server.json").read_text())
    engine = server["engine_core"]["pid"]
    truth = {(int(r["pid"]), int(r["step"])): r
             for w in server["workers"] for r in read_csv(tmp_path / f"truth_{w['pid']}.csv")}
    assert len(sched_steps) > 100
    assert not begins.get(0), "the tracer was attached from the start: every step stamped"
    for pid, key, kv, running, waiting, preempted, tokens in sched_steps:
        assert pid == engine
        ranks = begins.pop(key)
        assert sorted(p for p, _ in ranks) == sorted(w["pid"] for w in server["workers"])
        for rank_step in ranks:
            r = truth[rank_step]
            assert (kv, running, waiting, preempted, tokens) == (
                int(r["kv_usage_permille"]), int(r["running_reqs"]), int(r["waiting_reqs"]),
                int(r["preempted_reqs"]), int(r["num_tokens"])), rank_step
    assert sum(p for *_, p, _ in sched_steps) > 0, "preemptions were traced"
    # Steps whose output the engine had not processed when the run ended.
    assert len(begins) <= 2
